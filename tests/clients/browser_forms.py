#!/usr/bin/env python3
"""gatehouse's sign-in page in a real browser: Debian's Chromium, headless,
driven by Selenium and chromedriver, through gatehouse over TLS to whatever
the sites publish (the lab test: KCD to a Kerberos-only Apache).

usage: browser_forms.py SPEC.json

SPEC (written by crates/gatehouse/tests/forms_browser.rs):
  base, second       https://HOST:PORT of two sites of one cookie domain
  hosts, port        the names to map to 127.0.0.1, and gatehouse's port
  cert               gatehouse's certificate (its key's SPKI is trusted, nothing else)
  path               the page first asked for, e.g. /whoami?from=browser
  user, password     a user who signs in; expect_user: what the backend says
  locked             {user, password, wrong, attempts}: wrong passwords until gatehouse locks
  expired            {user, old, short, new, expect_user}: must change at next logon
  cookie             the session cookie's name; cookie_domain: its Domain
  shots              folder for the screenshots
  result             where to write what the caller checks next (JSON)

Prints PASS lines; exits 1 on the first failure (with a screenshot
failure.png), 2 on bad usage. Every check is one a person would make, or
one the page promises (labels, keyboard, contrast, no script, no other
origin, the cookie's flags).
"""
import glob
import re
import sys
import urllib.parse

import chromium
from chromium import ok
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC


# Relative luminance and contrast ratio (WCAG 2.x), from computed colours.
CONTRAST_JS = """
function rgb(s) { const m = s.match(/[\\d.]+/g).map(Number); return m.slice(0, 3); }
function lum(c) { const [r, g, b] = c.map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b; }
function bg(el) { while (el) { const c = getComputedStyle(el).backgroundColor;
  if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return rgb(c); el = el.parentElement; } return [255, 255, 255]; }
const out = [];
for (const el of document.querySelectorAll(arguments[0])) {
  const fg = lum(rgb(getComputedStyle(el).color)), back = lum(bg(el));
  const ratio = (Math.max(fg, back) + 0.05) / (Math.min(fg, back) + 0.05);
  out.push([el.tagName + (el.id ? '#' + el.id : '') + (el.className ? '.' + el.className : ''), Math.round(ratio * 100) / 100]);
}
return out;
"""


def steps(page, spec, result):
    fonts = [f for d in ("/usr/share/fonts", "/usr/local/share/fonts")
             for f in glob.glob(d + "/**/*", recursive=True) if f.endswith((".ttf", ".otf", ".ttc"))]
    assert fonts, "no fonts: screenshots would show no text (apt-get install fonts-liberation)"
    base, second, path = spec["base"], spec["second"], spec["path"]

    def at_sign_in():
        page.until(EC.presence_of_element_located((By.ID, "username")))
        u = urllib.parse.urlsplit(page.driver.current_url)
        assert u.path == "/.gatehouse/signin", page.driver.current_url
        return u

    def submit(user, password):
        page.driver.find_element(By.ID, "username").clear()
        page.driver.find_element(By.ID, "username").send_keys(user)
        page.driver.find_element(By.ID, "password").send_keys(password)
        page.driver.find_element(By.ID, "submit").click()

    caps = page.driver.capabilities
    ok(f"chromium {caps.get('browserVersion')} headless, chromedriver "
       f"{caps.get('chrome', {}).get('chromedriverVersion', '?').split()[0]}")

    # 1. The page first asked for sends the browser to sign in.
    page.driver.get(base + path)
    u = at_sign_in()
    assert urllib.parse.parse_qs(u.query)["return"] == [path], u.query
    page.shot("signin.png")
    ok(f"{base}{path} -> {u.path}?{u.query}")
    # The stylesheet applied under the page's CSP, nothing else loaded.
    ground = page.driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert ground == "rgb(238, 241, 245)", f"stylesheet not applied: {ground}"
    origins = page.driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
    assert origins and all(o == base for o in origins), origins
    assert not page.driver.find_elements(By.TAG_NAME, "script"), "a script element on the page"
    errors = [e for e in page.driver.get_log("browser") if "Content Security Policy" in e.get("message", "")]
    assert not errors, errors
    ok(f"stylesheet applied under the CSP, {len(origins)} resource(s), all from {base}; no script")
    # Every field has a label; text and controls have contrast.
    for field in page.driver.find_elements(By.CSS_SELECTOR, "input:not([type=hidden])"):
        fid = field.get_attribute("id")
        assert page.driver.find_elements(By.CSS_SELECTOR, f"label[for='{fid}']"), f"no label for #{fid}"
    ratios = page.driver.execute_script(CONTRAST_JS, "label, .hint, .product, h1, button, a, input")
    low = [r for r in ratios if r[1] < 4.5]
    assert not low, f"contrast under 4.5:1: {low}"
    ok(f"every field labelled; contrast of {len(ratios)} elements at least {min(r[1] for r in ratios)}:1")

    # 2. A wrong password: the message, no session.
    submit(spec["user"], spec["password"] + "-wrong")
    page.until(lambda d: page.message())
    assert page.message() == "The user name or password is incorrect.", page.message()
    assert not [c for c in page.driver.get_cookies() if c["name"] == spec["cookie"]], "a session after a wrong password"
    assert page.driver.find_element(By.ID, "username").get_attribute("value") == spec["user"]
    page.shot("error.png")
    ok(f"wrong password: '{page.message()}', no session cookie")

    # 3. Keyboard only: the first field has the focus; Tab moves through the
    #    form in order with a visible focus ring; Enter signs in.
    page.driver.get(base + path)
    at_sign_in()
    active = lambda: page.driver.switch_to.active_element
    # autofocus is applied once the document has loaded, which on a loaded
    # machine can come after the field is found: waited for, not sampled.
    try:
        page.until(lambda d: active().get_attribute("id") == "username")
    except Exception:
        raise AssertionError(f"the focus is on {active().get_attribute('id')!r}, not the user name") from None
    active().send_keys(spec["user"])
    order = []
    for key in (Keys.TAB, Keys.TAB, Keys.TAB):
        active().send_keys(key)
        el = active()
        ring = page.driver.execute_script("const s = getComputedStyle(arguments[0]); return s.outlineStyle + ' ' + s.outlineWidth", el)
        assert not ring.startswith("none"), f"no focus ring on #{el.get_attribute('id')}: {ring}"
        order.append(el.get_attribute("id"))
        if el.get_attribute("id") == "password":
            el.send_keys(spec["password"])
    assert order == ["password", "public", "submit"], order
    active().send_keys(Keys.ENTER)
    page.until(lambda d: urllib.parse.urlsplit(d.current_url).path != "/.gatehouse/signin")
    assert page.driver.current_url == base + path, page.driver.current_url
    text = page.body_text()
    assert f"REMOTE_USER={spec['expect_user']}" in text, text
    page.shot("landing.png")
    ok(f"keyboard only (Tab order {order}, focus rings, Enter): landed on {page.driver.current_url}: "
       f"{text.splitlines()[0]}")
    cookies = page.driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
    session = [c for c in cookies if c["name"] == spec["cookie"]]
    assert len(session) == 1, cookies
    c = session[0]
    assert c["httpOnly"] and c["secure"] and c["sameSite"] == "Lax", c
    assert c["domain"] == "." + spec["cookie_domain"], c
    assert page.driver.execute_script("return document.cookie") == "", "the session cookie is visible to scripts"
    result["copied_cookie"] = c["value"]
    ok(f"cookie {c['name']}: domain {c['domain']}, HttpOnly, Secure, SameSite={c['sameSite']}")

    # 4. The second site of the cookie domain: no second sign-in.
    page.driver.get(second + path)
    assert page.driver.current_url == second + path, page.driver.current_url
    text = page.body_text()
    assert f"REMOTE_USER={spec['expect_user']}" in text, text
    ok(f"{second}{path} without signing in again: {text.splitlines()[0]}")

    # 5. Sign out: the page says so, the cookie is gone.
    page.driver.get(base + "/.gatehouse/logoff")
    page.until(EC.presence_of_element_located((By.ID, "again")))
    assert urllib.parse.urlsplit(page.driver.current_url).path == "/.gatehouse/signedout", page.driver.current_url
    assert "You are signed out" in page.body_text(), page.body_text()
    assert not [c for c in page.driver.get_cookies() if c["name"] == spec["cookie"]], "the cookie outlived logoff"
    page.shot("signedout.png")
    page.driver.get(second + path)
    at_sign_in()
    ok("signed out: 'You are signed out', the cookie gone, the second site asks to sign in")

    # 6. Locked out: gatehouse stops before the domain does.
    locked = spec["locked"]
    page.driver.get(base + path)
    at_sign_in()
    for _ in range(locked["attempts"]):
        submit(locked["user"], locked["wrong"])
        page.until(lambda d: page.message())
    submit(locked["user"], locked["password"])
    page.until(lambda d: "locked out" in page.message())
    assert page.message().startswith("Your account is locked out here after too many failed sign-ins"), page.message()
    page.shot("locked.png")
    ok(f"{locked['attempts']} wrong passwords, then the right one: '{page.message()}'")

    # 7. A password that must change: the page asks for a new one, shows
    #    the domain's refusal in words, then signs in with the new one.
    expired = spec["expired"]
    page.driver.get(base + path)
    at_sign_in()
    submit(expired["user"], expired["old"])
    page.until(EC.presence_of_element_located((By.ID, "confirm")))
    assert "must be changed" in page.message() or "expired" in page.message(), page.message()
    page.shot("password.png")
    ok(f"expired password: the change page: '{page.message()}'")

    def change(new):
        page.driver.find_element(By.ID, "old").send_keys(expired["old"])
        page.driver.find_element(By.ID, "new").send_keys(new)
        page.driver.find_element(By.ID, "confirm").send_keys(new)
        page.driver.find_element(By.ID, "submit").click()
    change(expired["short"])
    page.until(lambda d: "refused" in page.message())
    assert re.search(r"at least \d+ characters", page.message()), page.message()
    page.shot("password-refused.png")
    ok(f"too short: '{page.message()}'")
    change(expired["new"])
    page.until(lambda d: urllib.parse.urlsplit(d.current_url).path != "/.gatehouse/password")
    assert page.driver.current_url == base + path, page.driver.current_url
    text = page.body_text()
    assert f"REMOTE_USER={expired['expect_user']}" in text, text
    ok(f"new password set through the domain and signed in: {text.splitlines()[0]}")

    # 8. Narrow screens: the form fits without scrolling sideways.
    page.driver.get(base + "/.gatehouse/logoff")
    page.until(EC.presence_of_element_located((By.ID, "again")))
    page.size(390, 760)
    page.driver.get(base + path)
    at_sign_in()
    wide = page.driver.execute_script("return document.documentElement.scrollWidth")
    assert wide <= 390, f"the page is {wide}px wide on a 390px screen"
    page.shot("signin-narrow.png")
    ok(f"390px wide screen: the page is {wide}px wide")


def configure(opts):
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})


if __name__ == "__main__":
    sys.exit(chromium.main(__doc__, 240, 1000, 760, steps, configure))
