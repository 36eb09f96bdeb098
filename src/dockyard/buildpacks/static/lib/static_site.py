"""Configure nginx to serve a static site: run by the static buildpack's bin/compile.

Usage: ``python3 static_site.py BUILD_DIR BUILDPACK_DIR``. Reads ``static.json`` (when
there is one), writes ``.dockyard/static/{nginx.conf,mime.types,start}`` into the app and
checks the config with ``nginx -t``. The config holds three placeholders that the start
script fills in when the dyno starts: ``@PORT@``, ``@APP@`` (where the slug is) and
``@RUN@`` (a private directory for nginx's pid, temp files and access log pipe).

Runs on the host's python3 inside the build sandbox, so it keeps to Python 3.8.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath

INDENT = "       "
OUT_DIR = ".dockyard/static"
SUPPORTED = ("root", "clean_urls", "error_page", "encoding", "routes")
# Quoted into nginx's config: keep to characters that need no escaping there.
SAFE_PATH = re.compile(r"^[A-Za-z0-9._~@%+/-]+$")
SAFE_ROUTE = re.compile(r"^(/[A-Za-z0-9._~@%+-]+)*/?$")
MIME_FALLBACK = """types {
    text/html html htm;
    text/css css;
    text/plain txt;
    application/javascript js mjs;
    application/json json;
    application/wasm wasm;
    image/svg+xml svg;
    image/png png;
    image/jpeg jpg jpeg;
    image/gif gif;
    image/webp webp;
    image/x-icon ico;
    font/woff woff;
    font/woff2 woff2;
}
"""


class SiteError(Exception):
    """static.json or the app asks for something that cannot be served; the message says what."""


def say(line: str = "") -> None:
    print(f"{INDENT}{line}".rstrip() if line else INDENT, flush=True)


def read_static_json(app: Path) -> dict[str, object]:
    path = app / "static.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteError(f"static.json could not be read: {exc}") from exc
    except ValueError as exc:
        raise SiteError(f"static.json is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SiteError('static.json must hold a JSON object, like {"root": "public/"}')
    ignored = sorted(set(data) - set(SUPPORTED))
    if ignored:
        say(f"static.json: ignoring {', '.join(ignored)} (supported: {', '.join(SUPPORTED)})")
    return data


def relative_path(app: Path, value: object, key: str) -> PurePosixPath:
    """A path inside the app, as static.json's ``key`` gives it."""
    if not isinstance(value, str) or not value.strip():
        raise SiteError(f'static.json: "{key}" must be a path such as "public/"')
    if not SAFE_PATH.match(value):
        raise SiteError(
            f'static.json: "{key}" is {value!r}; use only letters, digits and ._~@%+/- in paths'
        )
    path = PurePosixPath(value.strip("/") or ".")
    if value.startswith("/") or ".." in path.parts:
        raise SiteError(f'static.json: "{key}" must be a path inside the app, not {value!r}')
    return path


def choose_root(app: Path, config: dict[str, object]) -> PurePosixPath:
    if "root" in config:
        root = relative_path(app, config["root"], "root")
        if not (app / root).is_dir() or (app / root).is_symlink():
            raise SiteError(
                f'static.json: "root" is {config["root"]!r}, and the app has no such directory'
            )
        return root
    if (app / "public" / "index.html").is_file() or (
        (app / "public").is_dir() and not (app / "index.html").is_file()
    ):
        return PurePosixPath("public")
    return PurePosixPath(".")


def flag(config: dict[str, object], key: str) -> bool:
    value = config.get(key, False)
    if not isinstance(value, bool):
        raise SiteError(f'static.json: "{key}" must be true or false, not {value!r}')
    return value


def error_page(app: Path, root: PurePosixPath, config: dict[str, object]) -> str | None:
    if "error_page" not in config:
        return None
    page = relative_path(app, config["error_page"], "error_page")
    if not (app / root / page).is_file():
        raise SiteError(
            f'static.json: "error_page" is {config["error_page"]!r}, '
            f"and there is no such file in {root}/"
        )
    return f"/{page}"


def encoding(config: dict[str, object]) -> str:
    value = config.get("encoding", "utf-8")
    if not isinstance(value, str) or not re.match(r"^[A-Za-z0-9_-]{1,40}$", value):
        raise SiteError(
            f'static.json: "encoding" must be a charset name such as "utf-8", not {value!r}'
        )
    return value.lower()


def routes(app: Path, root: PurePosixPath, config: dict[str, object]) -> list[tuple[str, str]]:
    """``"routes": {"/**": "index.html"}``: paths that serve one file (single-page apps)."""
    value = config.get("routes", {})
    if not isinstance(value, dict):
        raise SiteError('static.json: "routes" must be an object, like {"/**": "index.html"}')
    found = []
    for pattern, target in value.items():
        base = pattern[:-3] if pattern.endswith("/**") else pattern
        if not (SAFE_ROUTE.match(base) and (base or pattern == "/**")):
            raise SiteError(
                f'static.json: route {pattern!r} must be a path such as "/about" or a prefix '
                'ending in "/**", such as "/app/**"'
            )
        file = relative_path(app, target, f"routes.{pattern}")
        if not (app / root / file).is_file():
            raise SiteError(
                f"static.json: route {pattern!r} serves {target!r}, which is not in {root}/"
            )
        found.append((pattern, f"/{file}"))
    return found


def server_block(
    root: PurePosixPath,
    clean_urls: bool,
    page: str | None,
    charset: str,
    spa_routes: list[tuple[str, str]],
) -> str:
    tries = "$uri $uri.html $uri/" if clean_urls else "$uri $uri/"
    served = "@APP@" if str(root) == "." else f"@APP@/{root}"
    lines = [
        "    server {",
        "        listen @PORT@;",
        "        server_name _;",
        f'        root "{served}";',
        "        index index.html index.htm;",
        f"        charset {charset};",
        "        # Redirects stay relative: the router, not this port, is what clients see.",
        "        absolute_redirect off;",
        "        # Dotfiles (.profile.d, this config) are not part of the site.",
        r"        location ~ /\.(?!well-known/) { return 404; }",
    ]
    if str(root) == ".":
        lines.append("        location = /static.json { return 404; }")
    for pattern, file in spa_routes:
        where = f'"{pattern[:-2]}"' if pattern.endswith("/**") else f'= "{pattern}"'
        lines.append(f'        location {where} {{ try_files {tries} "{file}"; }}')
    if not any(pattern == "/**" for pattern, _ in spa_routes):
        lines.append(f"        location / {{ try_files {tries} =404; }}")
    if page is not None:
        lines.append(f'        error_page 404 "{page}";')
    lines.append("    }")
    return "\n".join(lines)


def nginx_conf(server: str) -> str:
    return f"""# Written by Dockyard's static buildpack (from static.json when there is one).
# The start script fills in @PORT@, @APP@ (the slug's directory) and @RUN@ (a private
# directory for the pid file, temp files and the access log pipe) when the dyno starts.
worker_processes 1;
daemon off;
pid "@RUN@/nginx.pid";
error_log stderr;

events {{
    worker_connections 1024;
}}

http {{
    include "@APP@/{OUT_DIR}/mime.types";
    default_type application/octet-stream;
    access_log "@RUN@/access.log";
    client_body_temp_path "@RUN@/client_body";
    proxy_temp_path "@RUN@/proxy";
    fastcgi_temp_path "@RUN@/fastcgi";
    uwsgi_temp_path "@RUN@/uwsgi";
    scgi_temp_path "@RUN@/scgi";
    server_tokens off;
    sendfile on;
    keepalive_timeout 65;
    gzip on;
    gzip_types text/plain text/css application/javascript application/json image/svg+xml;

{server}
}}
"""


def nginx_version(nginx: str) -> tuple[int, ...]:
    done = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", done.stderr + done.stdout)
    if not found:
        raise SiteError(f"could not tell the version of {nginx}: {done.stderr.strip()}")
    return tuple(int(part) for part in found.groups())


def start_script(stderr_flag: bool) -> str:
    flag_arg = " -e stderr" if stderr_flag else ""
    return f"""#!/usr/bin/env bash
# The static site's web process: nginx in the foreground on $PORT, written by Dockyard's
# static buildpack. Works wherever the slug is unpacked (/app in a dyno).
set -euo pipefail
here=$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)
app=$(cd "$here/../.." && pwd)
port=${{PORT:-}}
if ! [[ $port =~ ^[0-9]+$ ]]; then
    echo "static site: PORT must be a port number, not '$port'" >&2
    exit 1
fi
if ! [[ $app =~ ^[A-Za-z0-9._~@%+/-]+$ ]]; then
    echo "static site: cannot serve from $app (unusual characters in the path)" >&2
    exit 1
fi
# nginx's own files go to a private directory: under /tmp, else (when /tmp is not
# writable) inside the app, which a dyno may write to.
run=$(mktemp -d "${{TMPDIR:-/tmp}}/nginx.XXXXXX" 2>/dev/null || mktemp -d "$here/run.XXXXXX")
sed -e "s|@PORT@|$port|g" -e "s|@APP@|$app|g" -e "s|@RUN@|$run|g" \\
    "$here/nginx.conf" >"$run/nginx.conf"
# nginx opens its access log by path; a dyno's stdout may not be reopenable by path for an
# unprivileged user, so the log goes through a pipe that cat copies to stdout.
mkfifo "$run/access.log"
cat "$run/access.log" &
nginx=/usr/sbin/nginx
[ -x "$nginx" ] || nginx=nginx
exec "$nginx" -p "$run/" -c "$run/nginx.conf"{flag_arg}
"""


def check(nginx: str, out: Path, app: Path, stderr_flag: bool) -> None:
    """``nginx -t`` on the config as the start script would fill it in."""
    run = Path(tempfile.mkdtemp(prefix="nginx-check."))
    try:
        text = (out / "nginx.conf").read_text()
        text = text.replace("@PORT@", "5000").replace("@APP@", str(app)).replace("@RUN@", str(run))
        (run / "nginx.conf").write_text(text)
        command = [nginx, "-t", "-q", "-p", f"{run}/", "-c", str(run / "nginx.conf")]
        if stderr_flag:
            command += ["-e", "stderr"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        shutil.rmtree(run, ignore_errors=True)
    if done.returncode != 0:
        for line in (done.stderr + done.stdout).splitlines():
            say(line)
        raise SiteError("nginx rejected the generated config (see above)")


def find_nginx() -> str:
    for candidate in ("/usr/sbin/nginx", shutil.which("nginx")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SiteError(
        "nginx is not installed on this server; the static buildpack serves sites with it. "
        "Ask its operator to install it (Debian: apt-get install -y nginx-light)."
    )


def configure(app: Path) -> None:
    nginx = find_nginx()
    version = nginx_version(nginx)
    say(f"Using nginx {'.'.join(map(str, version))} ({nginx})")
    config = read_static_json(app)
    root = choose_root(app, config)
    clean_urls = flag(config, "clean_urls")
    page = error_page(app, root, config)
    spa_routes = routes(app, root, config)
    if not (app / root / "index.html").is_file() and not spa_routes:
        say(f"Warning: there is no index.html in {root}/, so / will be a 404")
    say(f"root: {root}/")
    say(f"clean_urls: {'on' if clean_urls else 'off'}")
    if page:
        say(f"error_page: {page.lstrip('/')}")
    for pattern, file in spa_routes:
        say(f"route: {pattern} -> {file.lstrip('/')}")

    out = app / OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    mime = Path("/etc/nginx/mime.types")
    (out / "mime.types").write_text(mime.read_text() if mime.is_file() else MIME_FALLBACK)
    server = server_block(root, clean_urls, page, encoding(config), spa_routes)
    (out / "nginx.conf").write_text(nginx_conf(server))
    stderr_flag = version >= (1, 19, 5)  # nginx -e appeared in 1.19.5
    start = out / "start"
    start.write_text(start_script(stderr_flag))
    start.chmod(0o755)
    check(nginx, out, app, stderr_flag)
    say(f"Wrote {OUT_DIR}/nginx.conf and {OUT_DIR}/start (checked with nginx -t)")


def main() -> int:
    app = Path(sys.argv[1])
    print("-----> Configuring nginx", flush=True)
    try:
        configure(app)
    except SiteError as exc:
        print(f" !     {exc}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
