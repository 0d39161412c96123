#!/usr/bin/env python3
"""A SAML 2.0 identity provider built on pysaml2, for authx's interoperability tests.

pysaml2 does the SAML work: its `saml2.server.Server` parses and checks the service
provider's AuthnRequest (HTTP-Redirect binding) against the SP's metadata, builds the
response and assertion, signs them with xmlsec1 and its own key, and renders the HTTP-POST
binding's auto-submitting form. This program only adds a web server (the standard library's
wsgiref, on 127.0.0.1) and a sign-in page for one fixed test user.

Protocol with the test that runs it:
  1. It prints `listening <base URL>` on stdout once it serves; its metadata is at
     `<base URL>/metadata`, single sign-on at `<base URL>/sso`.
  2. The test writes `sp-metadata <URL>` on stdin; pysaml2 fetches the SP's metadata from
     there, and the program prints `ready` (or `error <why>`).
  3. When stdin closes (the test ended, however), the program exits.

The key and self-signed certificate are made fresh at start (RSA 2048) in a temporary
directory, unless --key and --cert name PEM files.
"""

import argparse
import contextlib
import datetime
import html
import os
import secrets
import shutil
import socketserver
import sys
import tempfile
import threading
import traceback
import urllib.parse
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.authn_context import PASSWORD, authn_context_class_ref
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import (
    NAME_FORMAT_URI,
    NAMEID_FORMAT_EMAILADDRESS,
    NAMEID_FORMAT_PERSISTENT,
    NameID,
)
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA1, DIGEST_SHA256, SIG_RSA_SHA1, SIG_RSA_SHA256

# The one user of this IdP.
USERNAME = "grace"
PASSWORD_TEXT = "pysaml2-interop-password"
IDENTITY = {
    "uid": [USERNAME],
    "mail": ["grace@pysaml2.example"],
    "givenName": ["Grace"],
    "sn": ["Hopper"],
}

ALGORITHMS = {
    "sha256": (SIG_RSA_SHA256, DIGEST_SHA256),
    "sha1": (SIG_RSA_SHA1, DIGEST_SHA1),
}

NAME_ID_FORMATS = {
    "persistent": NAMEID_FORMAT_PERSISTENT,
    "email": NAMEID_FORMAT_EMAILADDRESS,
}

# The most sign-ins waiting for the user's password at once; older ones are dropped beyond it.
MAX_PENDING = 100


def log(message):
    print(message, file=sys.stderr, flush=True)


def make_key_pair(directory):
    """A fresh RSA key and a self-signed certificate for it, as PEM files in `directory`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pysaml2 interop IdP")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_path = os.path.join(directory, "idp.key.pem")
    cert_path = os.path.join(directory, "idp.cert.pem")
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def idp_config(base, key_path, cert_path, name_id_format):
    conf = IdPConfig()
    conf.load(
        {
            "entityid": f"{base}/metadata",
            "service": {
                "idp": {
                    "name": "pysaml2 interop IdP",
                    "endpoints": {
                        "single_sign_on_service": [(f"{base}/sso", BINDING_HTTP_REDIRECT)],
                    },
                    "policy": {
                        "default": {
                            "lifetime": {"minutes": 5},
                            "attribute_restrictions": None,
                            "name_form": NAME_FORMAT_URI,
                            "nameid_format": name_id_format,
                        },
                    },
                    "name_id_format": [name_id_format],
                    "want_authn_requests_signed": False,
                },
            },
            "key_file": key_path,
            "cert_file": cert_path,
            "xmlsec_binary": shutil.which("xmlsec1"),
            "metadata": {},
            # The SP's clock may differ a little from this one.
            "accepted_time_diff": 120,
        }
    )
    return conf


class Idp:
    def __init__(self, args, base, key_path, cert_path):
        self.args = args
        self.base = base
        self.name_id_format = NAME_ID_FORMATS[args.name_id_format]
        self.config = idp_config(base, key_path, cert_path, self.name_id_format)
        self.server = Server(config=self.config)
        self.metadata = create_metadata_string(None, config=self.config).decode("utf-8")
        self.pending = {}
        self.lock = threading.Lock()
        self.sp_loaded = threading.Event()

    def load_sp_metadata(self, url):
        """pysaml2 fetches the SP's metadata and checks every later request against it."""
        self.server.metadata.load("remote", url=url)
        self.sp_loaded.set()

    # The web application.

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if path == "/metadata" and method == "GET":
                return respond(
                    start_response, "200 OK", self.metadata, "application/samlmetadata+xml"
                )
            if path == "/sso" and method == "GET":
                return self.sso(environ, start_response)
            if path == "/login" and method == "POST":
                return self.login(environ, start_response)
            return page(start_response, "404 Not Found", "Not found", "<p>No such page.</p>")
        except Exception as e:  # an IdP shows its errors; the test reads them
            log(traceback.format_exc())
            return page(
                start_response,
                "400 Bad Request",
                "The IdP refused the request",
                f"<p id=error>{html.escape(type(e).__name__)}: {html.escape(str(e))}</p>",
            )

    def sso(self, environ, start_response):
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        saml_request = query.get("SAMLRequest", [None])[0]
        relay_state = query.get("RelayState", [""])[0]
        if not saml_request:
            return page(start_response, "400 Bad Request", "No request", "<p>No SAMLRequest.</p>")
        if not self.sp_loaded.is_set():
            return page(
                start_response, "503 Service Unavailable", "Not ready", "<p>No SP metadata.</p>"
            )
        # Parses the request, checks its destination and time, and that the SP's metadata
        # names its issuer and assertion consumer service.
        req = self.server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT)
        response_args = self.server.response_args(req.message)
        key = secrets.token_urlsafe(16)
        with self.lock:
            if len(self.pending) >= MAX_PENDING:
                self.pending.clear()
            self.pending[key] = (req, response_args, relay_state)
        return self.login_page(start_response, key, req.message.issuer.text, "200 OK", "")

    def login_page(self, start_response, key, sp, status, error):
        body = f"""<p>Signing in to <span id=sp>{html.escape(sp)}</span></p>
{f'<p id=error>{html.escape(error)}</p>' if error else ''}
<form id=login method=post action="/login">
<input type=hidden name=request value="{html.escape(key)}">
<label>User name <input name=username autocomplete=username></label>
<label>Password <input name=password type=password autocomplete=current-password></label>
<button id=sign-in type=submit>Sign in</button>
</form>"""
        return page(start_response, status, "pysaml2 IdP sign-in", body)

    def login(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > 64 * 1024:
            return page(start_response, "413 Content Too Large", "Too large", "")
        form = urllib.parse.parse_qs(environ["wsgi.input"].read(length).decode("utf-8"))

        def field(name):
            return form.get(name, [""])[0]

        key = field("request")
        with self.lock:
            pending = self.pending.get(key)
        if pending is None:
            return page(start_response, "400 Bad Request", "Unknown request", "")
        req, response_args, relay_state = pending
        if field("username") != USERNAME or not secrets.compare_digest(
            field("password"), PASSWORD_TEXT
        ):
            return self.login_page(
                start_response, key, req.message.issuer.text, "401 Unauthorized", "Wrong password."
            )
        with self.lock:
            self.pending.pop(key, None)
        sign_alg, digest_alg = ALGORITHMS[self.args.algorithm]
        # A persistent NameID is pysaml2's own pairwise pseudonym; an emailAddress one is the
        # user's address (pysaml2 would otherwise make up a random one).
        name_id = None
        if self.name_id_format == NAMEID_FORMAT_EMAILADDRESS:
            name_id = NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=IDENTITY["mail"][0])
        response = self.server.create_authn_response(
            dict(IDENTITY),
            userid=USERNAME,
            name_id=name_id,
            authn={"class_ref": PASSWORD, "authn_auth": self.config.entityid},
            sign_response=self.args.sign_response,
            sign_assertion=self.args.sign_assertion,
            sign_alg=sign_alg,
            digest_alg=digest_alg,
            **response_args,
        )
        # The HTTP-POST binding: pysaml2's page that posts the response to the SP's ACS.
        http_args = self.server.apply_binding(
            BINDING_HTTP_POST,
            str(response),
            response_args["destination"],
            relay_state,
            response=True,
        )
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [http_args["data"].encode("utf-8")]


def respond(start_response, status, text, content_type):
    data = text.encode("utf-8")
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def page(start_response, status, title, body):
    text = f"""<!doctype html>
<html><head><meta charset=utf-8><title>{html.escape(title)}</title></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>"""
    return respond(start_response, status, text, "text/html; charset=utf-8")


class ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        log("idp: " + (format % args))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--host", default="localhost", help="host name in the IdP's URLs (another site than the SP)"
    )
    parser.add_argument(
        "--dir", help="where the fresh key and certificate go (default: a temporary directory)"
    )
    parser.add_argument("--key", help="PEM private key (default: a fresh RSA key)")
    parser.add_argument("--cert", help="PEM certificate of --key")
    parser.add_argument(
        "--sign-response", action=argparse.BooleanOptionalAction, default=True
    )
    parser.add_argument(
        "--sign-assertion", action=argparse.BooleanOptionalAction, default=True
    )
    parser.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="sha256")
    parser.add_argument("--name-id-format", choices=sorted(NAME_ID_FORMATS), default="persistent")
    args = parser.parse_args()
    if bool(args.key) != bool(args.cert):
        parser.error("--key and --cert go together")

    with contextlib.ExitStack() as cleanup:
        if args.key:
            key_path, cert_path = args.key, args.cert
        else:
            directory = args.dir or cleanup.enter_context(
                tempfile.TemporaryDirectory(prefix="authx-pysaml2-")
            )
            key_path, cert_path = make_key_pair(directory)
        httpd = make_server(
            args.bind, 0, None, server_class=ThreadingServer, handler_class=QuietHandler
        )
        base = f"http://{args.host}:{httpd.server_port}"
        idp = Idp(args, base, key_path, cert_path)
        httpd.set_app(idp)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        print(f"listening {base}", flush=True)

        for line in sys.stdin:
            command, _, value = line.strip().partition(" ")
            if command == "sp-metadata":
                try:
                    idp.load_sp_metadata(value)
                    print("ready", flush=True)
                except Exception as e:
                    log(traceback.format_exc())
                    print(f"error {type(e).__name__}: {e}", flush=True)
            elif command:
                print(f"error unknown command {command!r}", flush=True)
        # stdin closed: the test is over.
        httpd.shutdown()


if __name__ == "__main__":
    main()
