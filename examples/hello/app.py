#!/usr/bin/env python3
"""The README's example app: a tiny HTTP server on the standard library only.

Listens on 127.0.0.1:$PORT (default 8080). GET / answers a greeting with the request id
the queue-proxy passed along; GET /slow?ms=N waits N milliseconds first.
"""
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/slow":
            ms = int(parse_qs(url.query).get("ms", ["500"])[0])
            time.sleep(min(ms, 60_000) / 1000)
        body = (
            f"Hello from Sluice! pid={os.getpid()} "
            f"request-id={self.headers.get('X-Request-Id', '-')}\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Hello)
    server.daemon_threads = True
    print(f"hello app listening on 127.0.0.1:{port}", flush=True)
    server.serve_forever()
