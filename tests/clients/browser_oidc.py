#!/usr/bin/env python3
"""Signing in at an OpenID provider in a real browser: Debian's Chromium,
headless, driven by Selenium and chromedriver, through gatehouse over TLS to
the provider (the project's oidc-provider on loopback) and back, then to the
lab's Kerberos-only backend.

usage: browser_oidc.py SPEC.json

SPEC (written by crates/gatehouse/tests/oidc_browser.rs):
  base               https://HOST:PORT of the site (OIDC for browsers)
  hosts, cert        names mapped to 127.0.0.1; gatehouse's certificate (only its key trusted)
  path               the page first asked for
  user, password     a provider user with a domain account; expect_user: what the backend says
  stranger           {user, password, upn}: a provider user the domain does not know
  shots              folder for the screenshots

Prints PASS lines; exits 1 on the first failure (with a screenshot
failure.png), 2 on bad usage.
"""
import json
import os
import shutil
import signal
import sys
import tempfile
import traceback
import urllib.parse

import chromium
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def ok(text):
    print(f"PASS {text}", flush=True)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    spec = json.load(open(sys.argv[1]))

    def overdue(*_):
        raise TimeoutError("browser_oidc.py took over 180 s")
    signal.signal(signal.SIGALRM, overdue)
    signal.alarm(180)
    shots = spec["shots"]
    os.makedirs(shots, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="browser-oidc-")
    opts = chromium.options(spec["hosts"], spec["cert"], f"{tmp}/profile", 1000, 760)
    driver = None
    base, path = spec["base"], spec["path"]
    try:
        driver = chromium.start(opts)
        wait = WebDriverWait(driver, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))

        def shot(name):
            driver.execute_script("document.querySelectorAll('input').forEach(i => i.style.caretColor = 'transparent')")
            target = os.path.join(shots, name)
            assert driver.save_screenshot(target), f"could not write {target}"

        def body_text():
            return driver.find_element(By.TAG_NAME, "body").text

        def at_provider_login():
            wait.until(lambda d: "/interaction/" in d.current_url and d.find_elements(By.NAME, "login"))
            assert not driver.current_url.startswith(base), driver.current_url

        def log_in(user, password):
            driver.find_element(By.NAME, "login").clear()
            driver.find_element(By.NAME, "login").send_keys(user)
            driver.find_element(By.NAME, "password").send_keys(password)
            driver.find_element(By.CSS_SELECTOR, "form#login [type=submit], form#login button").click()

        # alice: sent to the provider, signs in there, comes back to the page she asked for.
        driver.get(base + path)
        at_provider_login()
        shot("oidc-provider-login.png")
        ok("a browser without a session is sent to the provider's login page")
        log_in(spec["user"], spec["password"])
        wait.until(lambda d: d.current_url == base + path)
        text = body_text()
        assert f"REMOTE_USER={spec['expect_user']}" in text, text
        shot("oidc-signed-in.png")
        ok(f"back at {path}, the Kerberos-only backend sees {spec['expect_user']}")
        cookies = {c["name"]: c for c in driver.get_cookies()}
        session = cookies.get("__Host-gatehouse")
        assert session and session["secure"] and session["httpOnly"], cookies
        assert "__Host-gatehouse-oidc" not in cookies, "the sign-in state cookie is gone after use"
        ok("one session cookie, Secure and HttpOnly; the state cookie cleared")

        # Logoff: gatehouse's session ends, then the provider's (it asks to confirm).
        driver.get(base + "/.gatehouse/logoff")
        wait.until(lambda d: "/session/end" in d.current_url)
        shot("oidc-provider-logout.png")
        driver.find_element(By.CSS_SELECTOR, "button[name=logout][value=yes]").click()
        wait.until(lambda d: urllib.parse.urlsplit(d.current_url).path == "/.gatehouse/signedout")
        assert "signed out" in body_text().lower(), body_text()
        shot("oidc-signed-out.png")
        ok("signed out at gatehouse and at the provider, back on gatehouse's page")
        driver.get(base + path)
        at_provider_login()
        ok("both sessions ended: the next visit asks for the password at the provider again")

        # A provider user the domain does not know: the page says so.
        log_in(spec["stranger"]["user"], spec["stranger"]["password"])
        wait.until(lambda d: d.current_url.startswith(base + "/.gatehouse/oidc/callback"))
        text = body_text()
        assert f"the domain has no account for {spec['stranger']['upn']}" in text, text
        shot("oidc-no-account.png")
        ok("a provider user without a domain account gets a page saying so")
    except Exception as e:  # noqa: BLE001 - report any failure and exit non-zero
        detail = ((getattr(e, "msg", None) or str(e)).splitlines() or [""])[0]
        lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == __file__]
        print(f"FAIL {type(e).__name__} (line {lines[-1] if lines else '?'}): {detail}", flush=True)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
