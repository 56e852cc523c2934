// gatehouse: the passkey buttons of the second step's pages.
//
// A form with data-passkey="create" or "get" carries the server's options
// for navigator.credentials in data-options (JSON, binary fields in
// base64url). On submit, this script asks the browser for the credential,
// puts its answer (JSON, base64url) into the form's "credential" field and
// posts the form. It loads nothing and runs nothing else: the page's CSP
// allows this file only.
"use strict";
(function () {
  function bytes(text) {
    var s = atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4));
    var out = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function text(buffer) {
    if (!buffer) return null;
    var b = new Uint8Array(buffer), s = "";
    for (var i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function ids(list) {
    return (list || []).map(function (c) {
      return { type: c.type, id: bytes(c.id), transports: c.transports };
    });
  }
  function creation(o) {
    var p = o.publicKey;
    p.challenge = bytes(p.challenge);
    p.user.id = bytes(p.user.id);
    p.excludeCredentials = ids(p.excludeCredentials);
    return { publicKey: p };
  }
  function request(o) {
    var p = o.publicKey;
    p.challenge = bytes(p.challenge);
    p.allowCredentials = ids(p.allowCredentials);
    return { publicKey: p };
  }
  function answer(kind, c) {
    var r = c.response, out = { id: c.id, rawId: text(c.rawId), type: c.type, extensions: {} };
    if (kind === "create") {
      out.response = {
        attestationObject: text(r.attestationObject),
        clientDataJSON: text(r.clientDataJSON),
        transports: r.getTransports ? r.getTransports() : undefined
      };
    } else {
      out.response = {
        authenticatorData: text(r.authenticatorData),
        clientDataJSON: text(r.clientDataJSON),
        signature: text(r.signature),
        userHandle: text(r.userHandle)
      };
    }
    return JSON.stringify(out);
  }
  function say(form, words) {
    var p = form.querySelector(".passkey-status");
    if (p) {
      p.textContent = words;
      p.hidden = false;
    }
  }
  function ready(form) {
    var kind = form.getAttribute("data-passkey");
    if (!window.PublicKeyCredential || !navigator.credentials) {
      say(form, "This browser cannot use passkeys here.");
      return;
    }
    form.addEventListener("submit", function (event) {
      var field = form.querySelector("input[name=credential]");
      if (field.value) return; // the answer is in: post it
      event.preventDefault();
      var options;
      try {
        options = JSON.parse(form.getAttribute("data-options"));
      } catch (e) {
        say(form, "This page is damaged. Load it again.");
        return;
      }
      say(form, "Follow your browser's prompt.");
      var asked = kind === "create"
        ? navigator.credentials.create(creation(options))
        : navigator.credentials.get(request(options));
      asked.then(function (c) {
        field.value = answer(kind, c);
        HTMLFormElement.prototype.submit.call(form); // a control named "submit" would hide form.submit
      }, function (e) {
        say(form, e && e.name === "NotAllowedError"
          ? "The passkey was not used (cancelled or timed out). Try again."
          : "The passkey did not work: " + (e && e.name ? e.name : "error") + ".");
      });
    });
  }
  var forms = document.querySelectorAll("form[data-passkey]");
  for (var i = 0; i < forms.length; i++) ready(forms[i]);
})();
