// Passkeys (WebAuthn) for authx's pages: served as a file from /assets/passkey.js, so the
// pages that use it allow script-src 'self' and nothing inline. Each ceremony is two JSON
// POSTs (begin, finish) with the page's form token; the server keeps the challenge.
"use strict";
(function () {
  function b64urlToBuf(s) {
    var b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function bufToB64url(buf) {
    var bytes = new Uint8Array(buf);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function creationOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = b64urlToBuf(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: b64urlToBuf(pk.user.id) });
    pk.excludeCredentials = (pk.excludeCredentials || []).map(function (c) {
      return Object.assign({}, c, { id: b64urlToBuf(c.id) });
    });
    return { publicKey: pk };
  }
  function requestOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = b64urlToBuf(pk.challenge);
    pk.allowCredentials = (pk.allowCredentials || []).map(function (c) {
      return Object.assign({}, c, { id: b64urlToBuf(c.id) });
    });
    return { publicKey: pk };
  }
  function attestationJSON(c) {
    return {
      id: c.id,
      rawId: bufToB64url(c.rawId),
      type: c.type,
      response: {
        attestationObject: bufToB64url(c.response.attestationObject),
        clientDataJSON: bufToB64url(c.response.clientDataJSON),
      },
      extensions: c.getClientExtensionResults ? c.getClientExtensionResults() : {},
    };
  }
  function assertionJSON(c) {
    var r = c.response;
    return {
      id: c.id,
      rawId: bufToB64url(c.rawId),
      type: c.type,
      response: {
        authenticatorData: bufToB64url(r.authenticatorData),
        clientDataJSON: bufToB64url(r.clientDataJSON),
        signature: bufToB64url(r.signature),
        userHandle: r.userHandle ? bufToB64url(r.userHandle) : null,
      },
      extensions: c.getClientExtensionResults ? c.getClientExtensionResults() : {},
    };
  }
  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    }).then(function (res) {
      return res.json().then(
        function (json) {
          if (!res.ok) throw new Error(json.message || "The passkey was not accepted.");
          return json;
        },
        function () {
          throw new Error("The server did not answer; try again.");
        }
      );
    });
  }
  function csrfOf(el) {
    var form = el.closest("form") || document;
    var input = form.querySelector('input[name="csrf_token"]') ||
      document.querySelector('input[name="csrf_token"]');
    return input ? input.value : "";
  }
  function fail(id, err) {
    var p = document.getElementById(id);
    if (!p) return;
    p.textContent = err && err.name === "NotAllowedError"
      ? "The passkey request was cancelled or timed out."
      : (err && err.message) || "The passkey was not accepted.";
    p.hidden = false;
  }
  function supported() {
    return !!(window.PublicKeyCredential && navigator.credentials);
  }

  // /account: add a passkey.
  var add = document.getElementById("add-passkey");
  if (add) {
    add.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (!supported()) return fail("passkey-error", new Error("This browser has no passkey support."));
      var csrf = csrfOf(add);
      var name = add.querySelector('input[name="name"]').value;
      var password = add.querySelector('input[name="current_password"]').value;
      post("/account/passkeys/begin", { csrf_token: csrf, current_password: password })
        .then(function (begun) {
          return navigator.credentials.create(creationOptions(begun.options)).then(function (cred) {
            return post("/account/passkeys/finish", {
              csrf_token: csrf,
              ceremony: begun.ceremony,
              name: name,
              credential: attestationJSON(cred),
            });
          });
        })
        .then(function (done) {
          if (!done.recovery_codes) return window.location.assign(done.redirect);
          // The account's first factor: its recovery codes, shown once, before going on.
          var box = document.getElementById("passkey-codes");
          var list = document.getElementById("passkey-codes-list");
          done.recovery_codes.forEach(function (code) {
            var li = document.createElement("li");
            li.textContent = code;
            list.appendChild(li);
          });
          document.getElementById("passkey-codes-continue").setAttribute("href", done.redirect);
          add.hidden = true;
          box.hidden = false;
        })
        .catch(function (err) { fail("passkey-error", err); });
    });
  }

  // /login: sign in with a passkey alone.
  var signIn = document.getElementById("passkey-signin");
  if (signIn) {
    signIn.addEventListener("click", function () {
      if (!supported()) return fail("passkey-error", new Error("This browser has no passkey support."));
      var csrf = csrfOf(document.getElementById("login"));
      post("/login/passkey/begin", { csrf_token: csrf })
        .then(function (begun) {
          return navigator.credentials.get(requestOptions(begun.options)).then(function (cred) {
            return post("/login/passkey/finish", {
              csrf_token: csrf,
              ceremony: begun.ceremony,
              return_to: signIn.getAttribute("data-return-to") || "/account",
              credential: assertionJSON(cred),
            });
          });
        })
        .then(function (done) { window.location.assign(done.redirect); })
        .catch(function (err) { fail("passkey-error", err); });
    });
  }

  // /login/second-factor: answer with a passkey.
  var second = document.getElementById("passkey-second-factor");
  if (second) {
    second.addEventListener("click", function () {
      if (!supported()) return fail("passkey-error", new Error("This browser has no passkey support."));
      var csrf = csrfOf(document.getElementById("second-factor"));
      post("/login/second-factor/passkey/begin", { csrf_token: csrf })
        .then(function (begun) {
          return navigator.credentials.get(requestOptions(begun.options)).then(function (cred) {
            return post("/login/second-factor/passkey/finish", {
              csrf_token: csrf,
              credential: assertionJSON(cred),
            });
          });
        })
        .then(function (done) { window.location.assign(done.redirect); })
        .catch(function (err) { fail("passkey-error", err); });
    });
  }
})();
