"""The router's error pages: what a browser shows when a request cannot reach the app.

Heroku's codes, each with its page: H10 (every web dyno crashed), H12 (no response within the
timeout), H13 (the dyno closed the connection without a response), H14 (no web dynos run),
H80 (maintenance mode), H99 (the platform failed), and a 404 for a host no app serves. The
router answers 503 for every code, as Heroku does; the code is in the page, in the
``Dockyard-Error`` header and in the router's log line. A request body over the limit gets
a 413 page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    code: str
    status: int
    description: str  # as the router's log line says it: desc="App crashed"
    title: str
    message: str

    def body(self, host_marker: str = "") -> str:
        """The HTML; ``host_marker`` is put where the host name goes (the 404 page)."""
        message = html.escape(self.message).replace("{host}", host_marker)
        return _TEMPLATE.format(
            title=html.escape(self.title), message=message, code=html.escape(self.code)
        )


PAGES = {
    page.code: page
    for page in (
        Page(
            "H10",
            503,
            "App crashed",
            "Application error",
            "Every web dyno of this app has crashed, so your request could not be served. "
            "If you own the app, `dockyard logs` shows why.",
        ),
        Page(
            "H12",
            503,
            "Request timeout",
            "Application error",
            "The app did not start its response in time. "
            "If you own the app, `dockyard logs` shows the slow request.",
        ),
        Page(
            "H13",
            503,
            "Connection closed without response",
            "Application error",
            "The app closed the connection without sending a response. "
            "If you own the app, `dockyard logs` shows what happened.",
        ),
        Page(
            "H14",
            503,
            "No web processes running",
            "No web dynos running",
            "This app has no web dynos running. If you own it, deploy it with git push, "
            "or scale it up with `dockyard ps:scale web=1`.",
        ),
        Page(
            "H80",
            503,
            "Maintenance mode",
            "Offline for maintenance",
            "This app is undergoing maintenance right now. Please check back soon.",
        ),
        Page(
            "H99",
            503,
            "Platform error",
            "Platform error",
            "The platform failed to serve this request. It is not a problem with the app; "
            "please try again in a moment.",
        ),
        Page(
            "413",
            413,
            "Request body too large",
            "Request too large",
            "The request's body is larger than this platform accepts for its apps.",
        ),
        Page(
            "404",
            404,
            "No such app",
            "No such app",
            "There is no app at {host}. Check the address, or add it to an app with "
            "`dockyard domains:add`.",
        ),
    )
}

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ margin: 0; font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       background: #f4f5f7; color: #3f3f44; }}
main {{ max-width: 34em; margin: 12vh auto; padding: 2em; background: #fff;
       border-radius: 6px; box-shadow: 0 1px 3px rgba(0, 0, 0, .12); }}
h1 {{ font-size: 1.4em; margin-top: 0; }}
code {{ color: #79589f; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p>{message}</p>
<p><small>Dockyard router error <code>{code}</code></small></p>
</main>
</body>
</html>
"""
