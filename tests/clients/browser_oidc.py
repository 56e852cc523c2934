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
import sys
import urllib.parse

import chromium
from chromium import ok
from selenium.webdriver.common.by import By


def steps(page, spec, result):
    base, path = spec["base"], spec["path"]

    def at_provider_login():
        page.until(lambda d: "/interaction/" in d.current_url and d.find_elements(By.NAME, "login"))
        assert not page.driver.current_url.startswith(base), page.driver.current_url

    def log_in(user, password):
        page.driver.find_element(By.NAME, "login").clear()
        page.driver.find_element(By.NAME, "login").send_keys(user)
        page.driver.find_element(By.NAME, "password").send_keys(password)
        page.driver.find_element(By.CSS_SELECTOR, "form#login [type=submit], form#login button").click()

    # alice: sent to the provider, signs in there, comes back to the page she asked for.
    page.driver.get(base + path)
    at_provider_login()
    page.shot("oidc-provider-login.png")
    ok("a browser without a session is sent to the provider's login page")
    log_in(spec["user"], spec["password"])
    page.until(lambda d: d.current_url == base + path)
    text = page.body_text()
    assert f"REMOTE_USER={spec['expect_user']}" in text, text
    page.shot("oidc-signed-in.png")
    ok(f"back at {path}, the Kerberos-only backend sees {spec['expect_user']}")
    cookies = {c["name"]: c for c in page.driver.get_cookies()}
    session = cookies.get("__Host-gatehouse")
    assert session and session["secure"] and session["httpOnly"], cookies
    assert "__Host-gatehouse-oidc" not in cookies, "the sign-in state cookie is gone after use"
    ok("one session cookie, Secure and HttpOnly; the state cookie cleared")

    # Logoff: gatehouse's session ends, then the provider's (it asks to confirm).
    page.driver.get(base + "/.gatehouse/logoff")
    page.until(lambda d: "/session/end" in d.current_url)
    page.shot("oidc-provider-logout.png")
    page.driver.find_element(By.CSS_SELECTOR, "button[name=logout][value=yes]").click()
    page.until(lambda d: urllib.parse.urlsplit(d.current_url).path == "/.gatehouse/signedout")
    assert "signed out" in page.body_text().lower(), page.body_text()
    page.shot("oidc-signed-out.png")
    ok("signed out at gatehouse and at the provider, back on gatehouse's page")
    page.driver.get(base + path)
    at_provider_login()
    ok("both sessions ended: the next visit asks for the password at the provider again")

    # A provider user the domain does not know: the page says so.
    log_in(spec["stranger"]["user"], spec["stranger"]["password"])
    page.until(lambda d: d.current_url.startswith(base + "/.gatehouse/oidc/callback"))
    text = page.body_text()
    assert f"the domain has no account for {spec['stranger']['upn']}" in text, text
    page.shot("oidc-no-account.png")
    ok("a provider user without a domain account gets a page saying so")


if __name__ == "__main__":
    sys.exit(chromium.main(__doc__, 180, 1000, 760, steps))
