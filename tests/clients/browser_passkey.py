#!/usr/bin/env python3
"""Passkeys in a real browser: Debian's Chromium, headless, driven by Selenium,
with Chromium's virtual WebAuthn authenticator (CTAP2, internal, user
verification), through gatehouse over TLS with KCD to the lab's Kerberos-only
Apache.

  1. alice signs in with her password, is asked for an enrolment code, enrols
     a passkey with the administrator's code and reaches the backend.
  2. signs out, signs in with password + passkey: the backend again (the
     password alone is sent back to the second step). The answer the
     browser posted is kept.
  3. refusals made by the browser: the kept answer replayed whole (its
     challenge was answered), the kept answer under a new challenge; then
     the passkey passes.
  4. renames the passkey on the factors page.
  5. bob enrols a passkey of his own; an assertion by alice's credential over
     bob's challenge (the authenticator signs it; the browser posts it on
     bob's page) is refused; bob's own passes.
  6. refusals crafted with alice's real private key (read from the virtual
     authenticator) over a real challenge of the page: a wrong RP id hash,
     no user-verification flag; the same crafting with the right values
     passes (so the refusals are for what was changed).
  7. removing her last factor with a session past fresh_for and no passkey
     is refused; with the passkey it is done.

usage: browser_passkey.py SPEC.json

SPEC (written by crates/gatehouse/tests/mfa_browser.rs):
  base, hosts, port, cert   as for browser_forms.py
  path                      the page first asked for; expect_user, expect_other: what the backend says
  user, password            alice; other, other_password: bob
  enrolment, other_enrolment  enrolment codes the administrator issued
  shots, result             screenshot folder; where to write what the caller checks

Prints PASS lines; exits 1 on the first failure (screenshot failure.png).
"""
import base64
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import urllib.parse

import chromium
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.virtual_authenticator import (
    Credential, Protocol, Transport, VirtualAuthenticatorOptions)
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def ok(text):
    print(f"PASS {text}", flush=True)


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# Keeps every form's fields as the page's script submits them, in
# sessionStorage (it outlives the navigation), then submits.
CAPTURE = """
const real = HTMLFormElement.prototype.submit;
HTMLFormElement.prototype.submit = function () {
  const f = this.querySelector('input[name=credential]');
  const c = this.querySelector('input[name=ceremony]');
  if (f && c) sessionStorage.setItem('answer', JSON.stringify({credential: f.value, ceremony: c.value}));
  return real.call(this);
};
"""

# Asks the authenticator for an assertion over this page's challenge with the
# given credential ids (base64url) instead of the ones the page allows, and
# resolves with the answer's JSON (as passkey.js would post it).
ASSERT_WITH = """
const [ids, done] = arguments;
const form = document.querySelector('form[data-passkey=get]');
const o = JSON.parse(form.getAttribute('data-options')).publicKey;
const bytes = t => Uint8Array.from(atob(t.replace(/-/g, '+').replace(/_/g, '/')), c => c.charCodeAt(0));
const text = b => b ? btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '') : null;
o.challenge = bytes(o.challenge);
o.allowCredentials = ids.map(id => ({type: 'public-key', id: bytes(id)}));
navigator.credentials.get({publicKey: o}).then(c => done(JSON.stringify({
  id: c.id, rawId: text(c.rawId), type: c.type, extensions: {},
  response: {authenticatorData: text(c.response.authenticatorData),
             clientDataJSON: text(c.response.clientDataJSON),
             signature: text(c.response.signature), userHandle: text(c.response.userHandle)}})),
  e => done('error: ' + e.name + ': ' + e.message));
"""

# Posts the page's passkey form with the given answer (and ceremony, if given).
POST_ANSWER = """
const [credential, ceremony] = arguments;
const form = document.querySelector('form[data-passkey]');
form.querySelector('input[name=credential]').value = credential;
if (ceremony !== null) form.querySelector('input[name=ceremony]').value = ceremony;
HTMLFormElement.prototype.submit.call(form);
"""


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    spec = json.load(open(sys.argv[1]))

    def overdue(*_):
        raise TimeoutError("browser_passkey.py took over 240 s")
    signal.signal(signal.SIGALRM, overdue)
    signal.alarm(240)
    shots = spec["shots"]
    os.makedirs(shots, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="browser-passkey-")
    opts = chromium.options(spec["hosts"], spec["cert"], f"{tmp}/profile", 1000, 1100)
    driver = None
    base, path = spec["base"], spec["path"]
    rp_id = urllib.parse.urlsplit(base).hostname
    result = {}
    try:
        driver = chromium.start(opts)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1000, "height": 1100, "deviceScaleFactor": 1, "mobile": False})
        driver.set_script_timeout(30)
        wait = WebDriverWait(driver, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
        driver.add_virtual_authenticator(VirtualAuthenticatorOptions(
            protocol=Protocol.CTAP2, transport=Transport.INTERNAL, has_resident_key=True,
            has_user_verification=True, is_user_verified=True))

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

        def click(element):
            driver.find_element(By.ID, element).click()

        def sign_in(user, password):
            driver.get(base + path)
            at("/.gatehouse/signin", "username")
            typed("username", user)
            typed("password", password)
            click("submit")

        def sign_out():
            driver.get(base + "/.gatehouse/logoff")
            wait.until(lambda d: urllib.parse.urlsplit(d.current_url).path == "/.gatehouse/signedout")

        def at_backend(expect):
            wait.until(lambda d: urllib.parse.urlsplit(d.current_url).path == urllib.parse.urlsplit(path).path)
            text = driver.find_element(By.TAG_NAME, "body").text
            assert expect in text, text
            return text

        def refused_with(words):
            at("/.gatehouse/mfa", "use-passkey")
            assert words in message(), message()
            return message()

        def credentials():
            return driver.get_credentials()

        # 1. alice: the password alone leads to enrolment, which asks for a code.
        sign_in(spec["user"], spec["password"])
        at("/.gatehouse/mfa/enrol", "enrolment")
        typed("enrolment", spec["enrolment"])
        click("submit")
        at("/.gatehouse/mfa/enrol", "add-passkey")
        scripts = [s.get_attribute("src") for s in driver.find_elements(By.TAG_NAME, "script")]
        assert scripts == [base + "/.gatehouse/passkey.js"], scripts
        assert driver.find_elements(By.CSS_SELECTOR, "img.logo"), "no logo on the enrolment page"
        typed("passkey-name", "alice's laptop")
        shot("passkey-enrol.png")
        click("add-passkey")
        at_backend(spec["expect_user"])
        held = credentials()
        assert len(held) == 1 and held[0].rp_id == rp_id, [(c.rp_id, c.id) for c in held]
        alice_cred = held[0]
        ok(f"enrolled a passkey with the enrolment code (rpId {rp_id}); reached the backend as {spec['expect_user']}")

        # 2. Signed out, in again: the password alone is not enough.
        sign_out()
        sign_in(spec["user"], spec["password"])
        at("/.gatehouse/mfa", "use-passkey")
        assert not driver.find_elements(By.ID, "code"), "alice has no app: no code form"
        driver.get(base + path)
        at("/.gatehouse/mfa", "use-passkey")
        ok("a session that passed only the password is sent to the second step, not to the backend")
        assert driver.find_elements(By.CSS_SELECTOR, "img.logo"), "no logo on the second step"
        shot("passkey-sign-in.png")
        driver.execute_script(CAPTURE)
        click("use-passkey")
        at_backend(spec["expect_user"])
        kept = json.loads(driver.execute_script("return sessionStorage.getItem('answer')"))
        assert kept["credential"].startswith("{") and kept["ceremony"], kept
        ok("password and passkey: the backend again")

        # 3. The kept answer replayed, whole and under a new challenge.
        sign_out()
        sign_in(spec["user"], spec["password"])
        at("/.gatehouse/mfa", "use-passkey")
        driver.execute_script(POST_ANSWER, kept["credential"], kept["ceremony"])
        words = refused_with("already used")
        shot("passkey-refused.png")
        ok(f"a replayed answer (its challenge already answered) refused: {words!r}")
        driver.execute_script(POST_ANSWER, kept["credential"], None)
        words = refused_with("not accepted")
        ok(f"an old answer under the page's new challenge refused: {words!r}")
        click("use-passkey")
        at_backend(spec["expect_user"])
        ok("then the passkey itself passes")

        # 4. The factors page: rename.
        driver.get(base + "/.gatehouse/mfa/factors")
        names = driver.find_elements(By.CSS_SELECTOR, "[id^=factor-name-]")
        assert len(names) == 1 and names[0].text == "alice's laptop", [n.text for n in names]
        factor = names[0].get_attribute("id").rsplit("-", 1)[1]
        typed(f"name-{factor}", "alice's security key")
        click(f"rename-{factor}")
        wait.until(lambda d: d.find_element(By.ID, f"factor-name-{factor}").text == "alice's security key")
        shot("passkey-factors.png")
        ok("renamed the passkey on the factors page")

        # 5. bob enrols his own passkey; alice's credential over bob's challenge.
        sign_out()
        sign_in(spec["other"], spec["other_password"])
        at("/.gatehouse/mfa/enrol", "enrolment")
        typed("enrolment", spec["other_enrolment"])
        click("submit")
        at("/.gatehouse/mfa/enrol", "add-passkey")
        click("add-passkey")
        at_backend(spec["expect_other"])
        assert len(credentials()) == 2, credentials()
        sign_out()
        sign_in(spec["other"], spec["other_password"])
        at("/.gatehouse/mfa", "use-passkey")
        answer = driver.execute_async_script(ASSERT_WITH, [alice_cred.id.rstrip("=")])
        assert answer.startswith("{"), answer
        assert json.loads(answer)["rawId"] == alice_cred.id.rstrip("="), "signed by alice's credential"
        driver.execute_script(POST_ANSWER, answer, None)
        words = refused_with("not accepted")
        ok(f"an assertion by alice's credential on bob's second step refused: {words!r}")
        click("use-passkey")
        at_backend(spec["expect_other"])
        ok("bob's own passkey passes")

        # 6. Crafted with alice's real key over a real challenge of the page.
        sign_out()
        sign_in(spec["user"], spec["password"])
        at("/.gatehouse/mfa", "use-passkey")
        held = {c.id: c for c in credentials()}[alice_cred.id]
        key = serialization.load_der_private_key(held._private_key, password=None)
        count = [held.sign_count]

        def crafted(rp, flags, origin=base):
            form = driver.find_element(By.CSS_SELECTOR, "form[data-passkey=get]")
            options = json.loads(form.get_attribute("data-options"))["publicKey"]
            count[0] += 1
            auth = hashlib.sha256(rp.encode()).digest() + bytes([flags]) + count[0].to_bytes(4, "big")
            client = json.dumps({"type": "webauthn.get", "challenge": options["challenge"],
                                 "origin": origin, "crossOrigin": False}).encode()
            sig = key.sign(auth + hashlib.sha256(client).digest(), ec.ECDSA(hashes.SHA256()))
            return json.dumps({"id": b64u(held._id), "rawId": b64u(held._id), "type": "public-key",
                               "extensions": {},
                               "response": {"authenticatorData": b64u(auth), "clientDataJSON": b64u(client),
                                            "signature": b64u(sig),
                                            "userHandle": b64u(held._user_handle) if held._user_handle else None}})

        driver.execute_script(POST_ANSWER, crafted("evil.ad.test", 0x05), None)
        words = refused_with("not accepted")
        ok(f"an assertion for another RP id (evil.ad.test), rightly signed, refused: {words!r}")
        driver.execute_script(POST_ANSWER, crafted(rp_id, 0x01), None)
        refused_with("not accepted")
        ok("an assertion without user verification (UP only) refused")
        other_origin = base.replace(rp_id, "evil.ad.test")
        driver.execute_script(POST_ANSWER, crafted(rp_id, 0x05, other_origin), None)
        refused_with("not accepted")
        ok("an assertion made on another origin refused")
        driver.execute_script(POST_ANSWER, crafted(rp_id, 0x05), None)
        at_backend(spec["expect_user"])
        ok("the same crafting with the right RP id, flags and origin passes")
        # The authenticator's counter, behind the one the server now holds,
        # moved ahead of it (the server refuses a counter that goes back).
        driver.remove_credential(bytearray(held._id))
        if held.is_resident_credential:
            again = Credential.create_resident_credential(
                held._id, held.rp_id, held._user_handle, held._private_key, count[0] + 10)
        else:
            again = Credential.create_non_resident_credential(held._id, held.rp_id, held._private_key, count[0] + 10)
        driver.add_credential(again)

        # 7. Removing the last factor: not with a stale session alone.
        time.sleep(float(spec.get("fresh_for_seconds", 1)) + 1)
        driver.get(base + "/.gatehouse/mfa/factors")
        at("/.gatehouse/mfa/factors", f"remove-{factor}")
        driver.execute_script("document.querySelectorAll('form[data-passkey]').forEach(f => {"
                              " f.removeAttribute('data-passkey'); f.querySelector('input[name=ceremony]').remove(); })")
        click(f"remove-{factor}")
        at("/.gatehouse/mfa/factors", f"remove-{factor}")
        assert "To remove your last second factor" in message(), message()
        ok(f"removing the last passkey with a stale session and no passkey refused: {message()!r}")
        click(f"remove-{factor}")
        wait.until(lambda d: not d.find_elements(By.ID, f"remove-{factor}"))
        assert not driver.find_elements(By.CSS_SELECTOR, "[id^=factor-name-]")
        ok("removing it with the passkey: done")
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
