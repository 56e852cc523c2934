"""Debian's Chromium, headless, through Selenium and chromedriver, as the
browser tests drive it: the test's host names mapped to loopback (WebAuthn and
cookies need names, never addresses) and only the test certificate's key
trusted. Shared by browser_forms.py and browser_mfa.py."""

import base64
import hashlib
import subprocess

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def spki_hash(cert):
    """The base64 SHA-256 of the certificate's public key, for
    --ignore-certificate-errors-spki-list."""
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"],
                         check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"],
                         input=pub, check=True, capture_output=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def options(hosts, cert, profile, width, height):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    rules = ", ".join(f"MAP {h} 127.0.0.1" for h in hosts)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--no-proxy-server",
                 "--no-first-run", f"--window-size={width},{height}", f"--user-data-dir={profile}",
                 f"--host-resolver-rules={rules}",
                 f"--ignore-certificate-errors-spki-list={spki_hash(cert)}"):
        opts.add_argument(flag)
    return opts


def start(opts):
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    return driver
