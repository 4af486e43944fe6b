#!/usr/bin/env python3
"""A stand-in for Archivista's HTTP API, for failure paths a real server will not produce.

Usage: archivista-standin.py PORTFILE MODE [GITOID | ENVELOPE-FILE]
It listens on 127.0.0.1 (free port, written to PORTFILE) and answers POST /query with one search
hit for GITOID (or an error, by MODE) and GET /download/<gitoid> according to MODE:
  wrong-bytes   the download's bytes do not hash to the gitoid
  huge          the download announces and sends 2 MiB
  huge-chunked  the download sends 2 MiB without announcing a length (until close)
  garbage       /query answers with bytes that are not JSON
  graphql-error /query answers with a GraphQL error
  counting      serves the envelope in ENVELOPE-FILE under its own gitoid and counts requests:
                GET /counts answers {"query": n, "download": n}; POST /control with
                {"answer": "hit"|"empty"|"error", "delay": seconds} sets how /query answers
                (a hit for the envelope unless it is in $seen, no hits, or a 500), and how long
                it waits first
It follows the request and response shapes of Archivista's documented API only as far as the
client under test needs them.
"""
import hashlib
import http.server
import json
import sys
import threading
import time

PORTFILE, MODE = sys.argv[1], sys.argv[2]
GITOID = sys.argv[3] if len(sys.argv) > 3 else "0" * 64
ENVELOPE = b""
if MODE == "counting":
    with open(GITOID, "rb") as f:
        ENVELOPE = f.read()
    GITOID = hashlib.sha256(b"blob %d\0" % len(ENVELOPE) + ENVELOPE).hexdigest()
LOCK = threading.Lock()
COUNTS = {"query": 0, "download": 0}
CONTROL = {"answer": "hit", "delay": 0.0}
EMPTY = {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}


def count(what):
    with LOCK:
        COUNTS[what] += 1


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, length=True):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if MODE == "counting":
            return self.counting_post(body)
        if MODE == "garbage":
            return self.reply(200, b"\x00not json")
        if MODE == "graphql-error":
            return self.reply(200, json.dumps({"errors": [{"message": "boom"}]}).encode())
        node = {"node": {"gitoidSha256": GITOID, "signatures": [{"keyID": "x"}]}}
        connection = {"edges": [node], "pageInfo": {"hasNextPage": False, "endCursor": None}}
        empty = {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}
        data = {}
        for alias in ["s0", "s1", "s2", "s3", "aflock"]:
            data[alias] = connection if alias == "s0" else empty
        self.reply(200, json.dumps({"data": data}).encode())

    def counting_post(self, body):
        if self.path == "/control":
            with LOCK:
                CONTROL.update(json.loads(body))
            return self.reply(200, b"{}")
        count("query")
        with LOCK:
            answer, delay = CONTROL["answer"], CONTROL["delay"]
        time.sleep(delay)
        if answer == "error":
            return self.reply(500, b"internal error")
        request = json.loads(body)
        variables = request.get("variables", {})
        seen = variables.get("seen") or []
        hit = answer == "hit" and GITOID not in seen
        node = {"node": {"gitoidSha256": GITOID, "signatures": [{"keyID": "x"}]}}
        found = {"edges": [node], "pageInfo": {"hasNextPage": False, "endCursor": None}}
        # Every aliased search of the round: the steps' (s0, s1, ...) and the subject-only one.
        data = {}
        for alias in [a for a in variables if a.startswith("after_")]:
            name = alias[len("after_"):]
            data[name] = found if hit and name == "s0" else EMPTY
        return self.reply(200, json.dumps({"data": data}).encode())

    def counting_get(self):
        if self.path == "/counts":
            with LOCK:
                return self.reply(200, json.dumps(COUNTS).encode())
        if self.path == "/download/" + GITOID:
            count("download")
            return self.reply(200, ENVELOPE)
        return self.reply(404, b"unknown gitoid")

    def do_GET(self):
        if MODE == "counting":
            return self.counting_get()
        if MODE == "wrong-bytes":
            return self.reply(200, b'{"payload":"e30=","payloadType":"x","signatures":[]}')
        if MODE == "huge":
            return self.reply(200, b"x" * (2 * 1024 * 1024))
        if MODE == "huge-chunked":
            # HTTP/1.0 without a length: the body runs until the connection closes.
            self.send_response(200)
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(32):
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return None
        self.reply(500, b"unknown gitoid")


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORTFILE, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
