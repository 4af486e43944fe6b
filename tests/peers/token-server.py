#!/usr/bin/env python3
"""A minimal Docker registry token server for tests (start-registry.sh --auth token).

token-server.py PORT USER SIGNER_KEY SIGNER_CERT ISSUER SERVICE [TLS_CERT TLS_KEY]
(the password comes from the environment variable TOKEN_SERVER_PASSWORD, not argv)

Serves GET /token on 127.0.0.1:PORT (HTTPS when TLS_CERT/TLS_KEY are given). A client that sends
HTTP basic auth with USER:PASSWORD gets every scope it asks for; an anonymous client gets a token
with no access (so the registry answers 401/403 to its pulls); wrong credentials get 401.

Tokens are JWTs signed RS256 with SIGNER_KEY by the `openssl` command (the standard library has
no RSA), carrying SIGNER_CERT in the `x5c` header. distribution 2.8 accepts them when that
certificate is in the registry's `auth.token.rootcertbundle`, `iss` equals its `issuer` and `aud`
its `service`. Standard library only; one request at a time is enough for tests.
"""
import base64
import hmac
import http.server
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.parse


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem_to_der_b64(path: str) -> str:
    lines = open(path).read().strip().splitlines()
    body = "".join(l for l in lines if not l.startswith("-----"))
    return body  # x5c wants standard base64 of the DER, which is exactly the PEM body


def main() -> None:
    port, user, key, cert, issuer, service = sys.argv[1:7]
    tls = sys.argv[7:9]
    password = os.environ["TOKEN_SERVER_PASSWORD"]
    x5c = [pem_to_der_b64(cert)]

    def sign(claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": x5c}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", key],
            input=signing_input.encode(), capture_output=True, check=True,
        ).stdout
        return f"{signing_input}.{b64url(signature)}"

    def access_for(scopes):
        # scope = "repository:NAME:pull,push" (NAME may hold ':' only before a tag; never here)
        access = []
        for scope in scopes:
            for item in scope.split(" "):
                parts = item.split(":")
                if len(parts) < 3:
                    continue
                kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        return access

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path != "/token":
                self.send_error(404)
                return
            query = urllib.parse.parse_qs(url.query)
            who = None
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                try:
                    u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
                except Exception:
                    u, p = "", ""
                if not (hmac.compare_digest(u, user) and hmac.compare_digest(p, password)):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="attestgate-test-token"')
                    self.end_headers()
                    return
                who = u
            if query.get("service", [service])[0] != service:
                self.send_error(400, "unknown service")
                return
            now = int(time.time())
            claims = {
                "iss": issuer, "sub": who or "", "aud": service, "iat": now, "nbf": now - 10,
                "exp": now + 300, "jti": b64url(os.urandom(12)),
                "access": access_for(query.get("scope", [])) if who else [],
            }
            token = sign(claims)
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300,
                               "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, fmt, *args):
            sys.stderr.write("token-server: " + (fmt % args) + "\n")

    server = http.server.HTTPServer(("127.0.0.1", int(port)), Handler)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[0], tls[1])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
