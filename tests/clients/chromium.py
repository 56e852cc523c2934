"""Debian's Chromium, headless, through Selenium and chromedriver, as the
browser tests drive it: the test's host names mapped to loopback (WebAuthn and
cookies need names, never addresses) and only the test certificate's key
trusted; and what every page script shares (Page, main). Used by
browser_forms.py, browser_mfa.py, browser_passkey.py, browser_oidc.py and
browser_status.py."""

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
import urllib.parse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

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


class Page:
    """The browser as a test script drives it: one driver, the site's base URL,
    the screenshot folder, and the steps every page script repeats (waiting
    for a page, typing into a field, the page's message, signing in and out)."""

    def __init__(self, driver, base, shots):
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait
        self.driver, self.base, self.shots = driver, base, shots
        self.wait = WebDriverWait(driver, 20,
                                  ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))

    def size(self, width, height):
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})

    def until(self, condition):
        """wait.until, tolerating an element that left the document while the
        condition looked at it (a page replaced under the check)."""
        from selenium.common.exceptions import WebDriverException

        def tolerant(d):
            try:
                return condition(d)
            except WebDriverException as e:
                if "does not belong to the document" not in str(e):
                    raise
                return None
        return self.wait.until(tolerant)

    def path(self):
        return urllib.parse.urlsplit(self.driver.current_url).path

    def at(self, page, element):
        """Waits for the element with id `element`, then asserts the page's path."""
        self.until(lambda d: d.find_elements(By.ID, element))
        u = urllib.parse.urlsplit(self.driver.current_url)
        assert u.path == page, self.driver.current_url
        return u

    def shot(self, name):
        # The text caret blinks: hidden, so that a page's picture is the same
        # on every run (CSSOM, which the pages' CSP allows to the driver).
        self.driver.execute_script("document.querySelectorAll('input').forEach(i => i.style.caretColor = 'transparent')")
        target = os.path.join(self.shots, name)
        assert self.driver.save_screenshot(target), f"could not write {target}"

    def message(self):
        found = self.driver.find_elements(By.ID, "message")
        return found[0].text if found else ""

    def says(self, words):
        """Waits for the page's message to contain `words` and returns it. A
        form that answers on its own path leaves the old page, with the same
        fields, in view until the answer loads: `at` alone would read the old
        page's message."""
        from selenium.common.exceptions import TimeoutException
        try:
            self.until(lambda d: words in self.message())
        except TimeoutException:
            raise AssertionError(f"the page never said {words!r}; it says {self.message()!r}") from None
        return self.message()

    def body_text(self):
        return self.driver.find_element(By.TAG_NAME, "body").text

    def typed(self, element, text):
        field = self.driver.find_element(By.ID, element)
        field.clear()
        field.send_keys(text)

    def click(self, element):
        self.driver.find_element(By.ID, element).click()

    def sign_in(self, path, user, password):
        """Asks for `path`, is sent to gatehouse's sign-in page, submits it."""
        self.driver.get(self.base + path)
        self.at("/.gatehouse/signin", "username")
        self.typed("username", user)
        self.typed("password", password)
        self.click("submit")

    def sign_out(self):
        self.driver.get(self.base + "/.gatehouse/logoff")
        self.until(lambda d: urllib.parse.urlsplit(d.current_url).path == "/.gatehouse/signedout")

    def at_backend(self, path, expect):
        """Waits until the browser is at `path` (the backend's page) and it names `expect`."""
        self.until(lambda d: urllib.parse.urlsplit(d.current_url).path == urllib.parse.urlsplit(path).path)
        text = self.body_text()
        assert expect in text, text
        return text


def ok(text):
    print(f"PASS {text}", flush=True)


def main(doc, seconds, width, height, body, configure=None):
    """Runs one page script: reads SPEC.json (argv[1]), starts Chromium with the
    spec's hosts and certificate, calls body(page, spec, result), writes
    `result` to spec["result"] when the spec names one. Every script fails
    alike: one FAIL line naming the exception and the script's line, the URL,
    a screenshot failure.png and the page's first words; exit 1. Exit 2 on bad
    usage. `configure(options)` may add to Chromium's options first."""
    script = os.path.basename(sys.argv[0])
    if len(sys.argv) != 2:
        print(doc, file=sys.stderr)
        return 2
    spec = json.load(open(sys.argv[1]))

    def overdue(*_):
        raise TimeoutError(f"{script} took over {seconds} s")
    signal.signal(signal.SIGALRM, overdue)
    signal.alarm(seconds)
    shots = spec["shots"]
    os.makedirs(shots, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f"{script.removesuffix('.py')}-")
    opts = options(spec["hosts"], spec["cert"], f"{tmp}/profile", width, height)
    if configure:
        configure(opts)
    driver, result = None, {}
    try:
        driver = start(opts)
        page = Page(driver, spec["base"], shots)
        page.size(width, height)
        body(page, spec, result)
        return 0
    except Exception as e:  # noqa: BLE001 - report any failure and exit non-zero
        detail = ((getattr(e, "msg", None) or str(e)).splitlines() or [""])[0]
        lines = [f.lineno for f in traceback.extract_tb(e.__traceback__)
                 if os.path.basename(f.filename) == script]
        print(f"FAIL {type(e).__name__} (line {lines[-1] if lines else '?'}): {detail}", flush=True)
        traceback.print_exc()
        if driver:
            try:
                print(f"     at {driver.current_url}")
                driver.save_screenshot(os.path.join(shots, "failure.png"))
                print(f"     page: {driver.find_element(By.TAG_NAME, 'body').text[:500]!r}")
            except Exception:  # noqa: BLE001
                pass
        return 1
    finally:
        signal.alarm(0)
        if driver:
            driver.quit()
        shutil.rmtree(tmp, ignore_errors=True)
        if "result" in spec:
            with open(spec["result"], "w") as f:
                json.dump(result, f)
