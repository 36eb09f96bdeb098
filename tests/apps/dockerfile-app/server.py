"""A Dockerfile app for Dockyard's end-to-end tests: says where and how it runs, as JSON."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = {
            "dyno": os.environ.get("DYNO"),
            "greeting": os.environ.get("GREETING"),
            "cwd": os.getcwd(),
            "uid": os.getuid(),
            "argv": sys.argv[1:],
            "version": os.environ.get("APP_VERSION"),
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(format % args, flush=True)


print("dockerfile app on", os.environ["PORT"], flush=True)
HTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
