"""A uv project for Dockyard's end-to-end tests: a page from the standard library's server."""

import os
from http.server import BaseHTTPRequestHandler, HTTPServer

import six


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"Hello from a uv project (six {six.__version__})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    HTTPServer(("", int(os.environ["PORT"])), Page).serve_forever()
