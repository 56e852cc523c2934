#!/usr/bin/env python3
"""The second factor in a real browser: Debian's Chromium, headless, driven by
Selenium, through gatehouse over TLS with KCD to the lab's Kerberos-only
Apache. The user signs in with the password, enrols an authenticator app with
an enrolment code (the key read off the page, codes made with pyotp, an
implementation independent of gatehouse's), reaches the backend, signs out,
signs in again with password and code (a reused code refused first).

usage: browser_mfa.py SPEC.json

SPEC (written by crates/gatehouse/tests/mfa_browser.rs):
  base, hosts, port, cert   as for browser_forms.py
  path                      the page first asked for; expect_user: what the backend says
  user, password            who signs in
  enrolment                 the enrolment code an administrator issued
  shots, result             screenshot folder; where to write what the caller checks

Prints PASS lines; exits 1 on the first failure (screenshot failure.png).
"""
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import urllib.parse

import pyotp
import chromium
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def ok(text):
    print(f"PASS {text}", flush=True)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    spec = json.load(open(sys.argv[1]))

    def overdue(*_):
        raise TimeoutError("browser_mfa.py took over 180 s")
    signal.signal(signal.SIGALRM, overdue)
    signal.alarm(180)
    shots = spec["shots"]
    os.makedirs(shots, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="browser-mfa-")
    opts = chromium.options(spec["hosts"], spec["cert"], f"{tmp}/profile", 1000, 900)
    driver = None
    base, path = spec["base"], spec["path"]
    result = {}
    try:
        driver = chromium.start(opts)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1000, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        wait = WebDriverWait(driver, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))

        def at(page, element):
            wait.until(EC.presence_of_element_located((By.ID, element)))
            u = urllib.parse.urlsplit(driver.current_url)
            assert u.path == page, driver.current_url
            return u

        def shot(name):
            driver.execute_script("document.querySelectorAll('input').forEach(i => i.style.caretColor = 'transparent')")
            assert driver.save_screenshot(os.path.join(shots, name))

        def message():
            found = driver.find_elements(By.ID, "message")
            return found[0].text if found else ""

        def typed(element, text):
            field = driver.find_element(By.ID, element)
            field.clear()
            field.send_keys(text)

        def sign_in():
            driver.get(base + path)
            at("/.gatehouse/signin", "username")
            typed("username", spec["user"])
            typed("password", spec["password"])
            driver.find_element(By.ID, "submit").click()

        def at_backend():
            wait.until(lambda d: urllib.parse.urlsplit(d.current_url).path == urllib.parse.urlsplit(path).path)
            text = driver.find_element(By.TAG_NAME, "body").text
            assert spec["expect_user"] in text, text
            return text

        # 1. Password only: sent to the second step, which (no factor yet, not
        # from the enrolment networks) asks for an enrolment code.
        sign_in()
        at("/.gatehouse/mfa/enrol", "enrolment")
        assert not driver.find_elements(By.TAG_NAME, "script"), "a script element"
        shot("mfa-enrol-code.png")
        ok("the password alone leads to enrolment, which asks for an enrolment code")
        typed("enrolment", "AAAAA-BBBBB-CCCCC-DDDDD")
        driver.find_element(By.ID, "submit").click()
        at("/.gatehouse/mfa/enrol", "enrolment")
        assert "not valid" in message(), message()
        ok(f"a wrong enrolment code: {message()!r}")

        # 2. The administrator's code: the QR code and the key.
        typed("enrolment", spec["enrolment"])
        driver.find_element(By.ID, "submit").click()
        at("/.gatehouse/mfa/enrol", "secret")
        svg = driver.find_elements(By.CSS_SELECTOR, "figure.qr svg")
        assert svg and svg[0].size["width"] >= 150, "no QR code"
        secret = driver.find_element(By.ID, "secret").text.strip()
        assert len(secret) == 32, secret
        shot("mfa-enrol-app.png")
        totp = pyotp.TOTP(secret)
        first = totp.now()
        typed("name", "bob's phone")
        typed("code", first)
        driver.find_element(By.ID, "submit").click()
        at_backend()
        ok(f"enrolled with a code from pyotp; reached the backend as {spec['expect_user']}")

        # 3. Signed out, in again: password, then the code form.
        driver.get(base + "/.gatehouse/logoff")
        wait.until(lambda d: urllib.parse.urlsplit(d.current_url).path == "/.gatehouse/signedout")
        sign_in()
        at("/.gatehouse/mfa", "code")
        shot("mfa-code.png")
        typed("code", first)
        driver.find_element(By.ID, "submit").click()
        at("/.gatehouse/mfa", "code")
        assert "already used" in message(), message()
        shot("mfa-refused.png")
        ok(f"the enrolling code again: {message()!r}")
        # The next step's code is within the skew and newer than the last.
        typed("code", totp.at(time.time() + 30))
        driver.find_element(By.ID, "submit").click()
        at_backend()
        ok("password and the next code: the backend again")
        cookies = {c["name"]: c for c in driver.get_cookies()}
        result["cookie_flags"] = {k: cookies["__Host-gatehouse"].get(k) for k in ("secure", "httpOnly", "sameSite")}
        json.dump(result, open(spec["result"], "w"))
        return 0
    except Exception:
        traceback.print_exc()
        if driver:
            try:
                driver.save_screenshot(os.path.join(shots, "failure.png"))
                print("at", driver.current_url, file=sys.stderr)
                print(driver.page_source[:3000], file=sys.stderr)
            except Exception:
                pass
        print("FAIL", flush=True)
        return 1
    finally:
        if driver:
            driver.quit()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
