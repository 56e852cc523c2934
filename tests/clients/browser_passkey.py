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
import sys
import time
import urllib.parse

import chromium
from chromium import ok
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from selenium.webdriver.common.by import By
from selenium.webdriver.common.virtual_authenticator import (
    Credential, Protocol, Transport, VirtualAuthenticatorOptions)


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


def refused_with(page, words):
    """On the second step again, its message naming why."""
    page.at("/.gatehouse/mfa", "use-passkey")
    return page.says(words)


def steps(page, spec, result):
    base, path = spec["base"], spec["path"]
    rp_id = urllib.parse.urlsplit(base).hostname
    page.driver.set_script_timeout(30)
    page.driver.add_virtual_authenticator(VirtualAuthenticatorOptions(
        protocol=Protocol.CTAP2, transport=Transport.INTERNAL, has_resident_key=True,
        has_user_verification=True, is_user_verified=True))

    # 1. alice: the password alone leads to enrolment, which asks for a code.
    page.sign_in(path, spec["user"], spec["password"])
    page.at("/.gatehouse/mfa/enrol", "enrolment")
    page.typed("enrolment", spec["enrolment"])
    page.click("submit")
    page.at("/.gatehouse/mfa/enrol", "add-passkey")
    scripts = [s.get_attribute("src") for s in page.driver.find_elements(By.TAG_NAME, "script")]
    assert scripts == [base + "/.gatehouse/passkey.js"], scripts
    assert page.driver.find_elements(By.CSS_SELECTOR, "img.logo"), "no logo on the enrolment page"
    page.typed("passkey-name", "alice's laptop")
    page.shot("passkey-enrol.png")
    page.click("add-passkey")
    page.at_backend(path, spec["expect_user"])
    held = page.driver.get_credentials()
    assert len(held) == 1 and held[0].rp_id == rp_id, [(c.rp_id, c.id) for c in held]
    alice_cred = held[0]
    ok(f"enrolled a passkey with the enrolment code (rpId {rp_id}); reached the backend as {spec['expect_user']}")

    # 2. Signed out, in again: the password alone is not enough.
    page.sign_out()
    page.sign_in(path, spec["user"], spec["password"])
    page.at("/.gatehouse/mfa", "use-passkey")
    assert not page.driver.find_elements(By.ID, "code"), "alice has no app: no code form"
    page.driver.get(base + path)
    page.at("/.gatehouse/mfa", "use-passkey")
    ok("a session that passed only the password is sent to the second step, not to the backend")
    assert page.driver.find_elements(By.CSS_SELECTOR, "img.logo"), "no logo on the second step"
    page.shot("passkey-sign-in.png")
    page.driver.execute_script(CAPTURE)
    page.click("use-passkey")
    page.at_backend(path, spec["expect_user"])
    kept = json.loads(page.driver.execute_script("return sessionStorage.getItem('answer')"))
    assert kept["credential"].startswith("{") and kept["ceremony"], kept
    ok("password and passkey: the backend again")

    # 3. The kept answer replayed, whole and under a new challenge.
    page.sign_out()
    page.sign_in(path, spec["user"], spec["password"])
    page.at("/.gatehouse/mfa", "use-passkey")
    page.driver.execute_script(POST_ANSWER, kept["credential"], kept["ceremony"])
    words = refused_with(page, "already used")
    page.shot("passkey-refused.png")
    ok(f"a replayed answer (its challenge already answered) refused: {words!r}")
    page.driver.execute_script(POST_ANSWER, kept["credential"], None)
    words = refused_with(page, "not accepted")
    ok(f"an old answer under the page's new challenge refused: {words!r}")
    page.click("use-passkey")
    page.at_backend(path, spec["expect_user"])
    ok("then the passkey itself passes")

    # 4. The factors page: rename.
    page.driver.get(base + "/.gatehouse/mfa/factors")
    names = page.driver.find_elements(By.CSS_SELECTOR, "[id^=factor-name-]")
    assert len(names) == 1 and names[0].text == "alice's laptop", [n.text for n in names]
    factor = names[0].get_attribute("id").rsplit("-", 1)[1]
    page.typed(f"name-{factor}", "alice's security key")
    page.click(f"rename-{factor}")
    page.until(lambda d: d.find_element(By.ID, f"factor-name-{factor}").text == "alice's security key")
    page.shot("passkey-factors.png")
    ok("renamed the passkey on the factors page")

    # 5. bob enrols his own passkey; alice's credential over bob's challenge.
    page.sign_out()
    page.sign_in(path, spec["other"], spec["other_password"])
    page.at("/.gatehouse/mfa/enrol", "enrolment")
    page.typed("enrolment", spec["other_enrolment"])
    page.click("submit")
    page.at("/.gatehouse/mfa/enrol", "add-passkey")
    page.click("add-passkey")
    page.at_backend(path, spec["expect_other"])
    assert len(page.driver.get_credentials()) == 2, page.driver.get_credentials()
    page.sign_out()
    page.sign_in(path, spec["other"], spec["other_password"])
    page.at("/.gatehouse/mfa", "use-passkey")
    answer = page.driver.execute_async_script(ASSERT_WITH, [alice_cred.id.rstrip("=")])
    assert answer.startswith("{"), answer
    assert json.loads(answer)["rawId"] == alice_cred.id.rstrip("="), "signed by alice's credential"
    page.driver.execute_script(POST_ANSWER, answer, None)
    words = refused_with(page, "not accepted")
    ok(f"an assertion by alice's credential on bob's second step refused: {words!r}")
    page.click("use-passkey")
    page.at_backend(path, spec["expect_other"])
    ok("bob's own passkey passes")

    # 6. Crafted with alice's real key over a real challenge of the page.
    page.sign_out()
    page.sign_in(path, spec["user"], spec["password"])
    page.at("/.gatehouse/mfa", "use-passkey")
    held = {c.id: c for c in page.driver.get_credentials()}[alice_cred.id]
    key = serialization.load_der_private_key(held._private_key, password=None)
    count = [held.sign_count]

    def crafted(rp, flags, origin=base):
        form = page.driver.find_element(By.CSS_SELECTOR, "form[data-passkey=get]")
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

    page.driver.execute_script(POST_ANSWER, crafted("evil.ad.test", 0x05), None)
    words = refused_with(page, "not accepted")
    ok(f"an assertion for another RP id (evil.ad.test), rightly signed, refused: {words!r}")
    page.driver.execute_script(POST_ANSWER, crafted(rp_id, 0x01), None)
    refused_with(page, "not accepted")
    ok("an assertion without user verification (UP only) refused")
    other_origin = base.replace(rp_id, "evil.ad.test")
    page.driver.execute_script(POST_ANSWER, crafted(rp_id, 0x05, other_origin), None)
    refused_with(page, "not accepted")
    ok("an assertion made on another origin refused")
    page.driver.execute_script(POST_ANSWER, crafted(rp_id, 0x05), None)
    page.at_backend(path, spec["expect_user"])
    ok("the same crafting with the right RP id, flags and origin passes")
    # The authenticator's counter, behind the one the server now holds,
    # moved ahead of it (the server refuses a counter that goes back).
    page.driver.remove_credential(bytearray(held._id))
    if held.is_resident_credential:
        again = Credential.create_resident_credential(
            held._id, held.rp_id, held._user_handle, held._private_key, count[0] + 10)
    else:
        again = Credential.create_non_resident_credential(held._id, held.rp_id, held._private_key, count[0] + 10)
    page.driver.add_credential(again)

    # 7. Removing the last factor: not with a stale session alone.
    time.sleep(float(spec.get("fresh_for_seconds", 1)) + 1)
    page.driver.get(base + "/.gatehouse/mfa/factors")
    page.at("/.gatehouse/mfa/factors", f"remove-{factor}")
    page.driver.execute_script("document.querySelectorAll('form[data-passkey]').forEach(f => {"
                          " f.removeAttribute('data-passkey'); f.querySelector('input[name=ceremony]').remove(); })")
    page.click(f"remove-{factor}")
    page.at("/.gatehouse/mfa/factors", f"remove-{factor}")
    page.says("To remove your last second factor")
    ok(f"removing the last passkey with a stale session and no passkey refused: {page.message()!r}")
    page.click(f"remove-{factor}")
    page.until(lambda d: not d.find_elements(By.ID, f"remove-{factor}"))
    assert not page.driver.find_elements(By.CSS_SELECTOR, "[id^=factor-name-]")
    ok("removing it with the passkey: done")


if __name__ == "__main__":
    sys.exit(chromium.main(__doc__, 240, 1000, 1100, steps))
