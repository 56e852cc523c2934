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
import sys
import time

import pyotp
import chromium
from chromium import ok
from selenium.webdriver.common.by import By


def steps(page, spec, result):
    path = spec["path"]
    # 1. Password only: sent to the second step, which (no factor yet, not
    # from the enrolment networks) asks for an enrolment code.
    page.sign_in(path, spec["user"], spec["password"])
    page.at("/.gatehouse/mfa/enrol", "enrolment")
    assert not page.driver.find_elements(By.TAG_NAME, "script"), "a script element"
    page.shot("mfa-enrol-code.png")
    ok("the password alone leads to enrolment, which asks for an enrolment code")
    page.typed("enrolment", "AAAAA-BBBBB-CCCCC-DDDDD")
    page.click("submit")
    page.at("/.gatehouse/mfa/enrol", "enrolment")
    ok(f"a wrong enrolment code: {page.says('not valid')!r}")

    # 2. The administrator's code: the QR code and the key.
    page.typed("enrolment", spec["enrolment"])
    page.click("submit")
    page.at("/.gatehouse/mfa/enrol", "secret")
    svg = page.driver.find_elements(By.CSS_SELECTOR, "figure.qr svg")
    assert svg and svg[0].size["width"] >= 150, "no QR code"
    secret = page.driver.find_element(By.ID, "secret").text.strip()
    assert len(secret) == 32, secret
    page.shot("mfa-enrol-app.png")
    totp = pyotp.TOTP(secret)
    first = totp.now()
    page.typed("name", "bob's phone")
    page.typed("code", first)
    page.click("submit")
    page.at_backend(path, spec["expect_user"])
    ok(f"enrolled with a code from pyotp; reached the backend as {spec['expect_user']}")

    # 3. Signed out, in again: password, then the code form.
    page.sign_out()
    page.sign_in(path, spec["user"], spec["password"])
    page.at("/.gatehouse/mfa", "code")
    page.shot("mfa-code.png")
    page.typed("code", first)
    page.click("submit")
    page.at("/.gatehouse/mfa", "code")
    page.says("already used")
    page.shot("mfa-refused.png")
    ok(f"the enrolling code again: {page.message()!r}")
    # The next step's code is within the skew and newer than the last.
    page.typed("code", totp.at(time.time() + 30))
    page.click("submit")
    page.at_backend(path, spec["expect_user"])
    ok("password and the next code: the backend again")
    cookies = {c["name"]: c for c in page.driver.get_cookies()}
    result["cookie_flags"] = {k: cookies["__Host-gatehouse"].get(k) for k in ("secure", "httpOnly", "sameSite")}


if __name__ == "__main__":
    sys.exit(chromium.main(__doc__, 180, 1000, 900, steps))
