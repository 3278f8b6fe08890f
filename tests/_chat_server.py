"""Test helper: a real chat-completions HTTP server on 127.0.0.1 (the ``chat_server`` fixture, registered in
tests/conftest.py; a second conftest.py would shadow the root one for ``from conftest import ...``)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@pytest.fixture
def chat_server():
    """``start(respond) -> base_url``: serves POSTs on 127.0.0.1 until the test ends. ``respond(path, headers,
    body)`` returns ``(status, extra_headers, payload)`` or ``"drop"`` (close the connection without a reply)."""
    servers = []

    def start(respond):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n) or b"null")
                out = respond(self.path, dict(self.headers), body)
                if out == "drop":
                    self.close_connection = True
                    return
                code, headers, payload = out
                data = payload.encode() if isinstance(payload, str) else payload
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        thread.start()
        servers.append((httpd, thread))
        return f"http://127.0.0.1:{httpd.server_address[1]}/v1"

    try:
        yield start
    finally:
        for httpd, thread in servers:
            httpd.shutdown()
            httpd.server_close()
            thread.join(5)
