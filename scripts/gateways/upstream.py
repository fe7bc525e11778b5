"""The application behind the gateway in scripts/test-gateways: answers every request with
the request's method, path and headers as JSON, exactly as they arrived (repeated headers
included), and keeps the list of paths it has served, which `GET /__seen` (on its own port,
not through the gateway) returns. Standard library only.

    python3 upstream.py PORT
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEEN = []
SEEN_LOCK = threading.Lock()


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _echo(self):
        if self.path == "/__seen":
            with SEEN_LOCK:
                return self._answer(list(SEEN))
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        with SEEN_LOCK:
            SEEN.append(self.path)
        self._answer(
            {
                "method": self.command,
                "path": self.path,
                "headers": [[k.lower(), v] for k, v in self.headers.items()],
            }
        )

    do_GET = do_POST = do_PUT = do_DELETE = _echo

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
