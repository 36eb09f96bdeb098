"""``builds``, ``builds:info``, ``builds:output``, ``builds:cache:purge``.

A build is made by each ``git push`` (or ``POST /apps/{app}/builds``). Builds are named by
their id; the commands also take the first characters of one, as the ``builds`` table shows.
"""

from __future__ import annotations

import os
import sys
import uuid

import click
import httpx

from dockyard.cli import output
from dockyard.cli.client import TIMEOUT, Client, Json, connect, segment
from dockyard.cli.errors import ApiError, ClientError, Unreachable
from dockyard.cli.options import DEFAULT_REMOTE, app_options, json_option

NEWEST_FIRST = "created_at ..; order=desc"
SHORT_ID = 8


def _short(build: Json) -> str:
    return str(build.get("id", ""))[:SHORT_ID]


def _commit(build: Json) -> str:
    return str((build.get("source_blob") or {}).get("version") or "")


def _user(build: Json) -> str:
    return str((build.get("user") or {}).get("email", ""))


def _latest(client: Client, app: str) -> Json:
    newest = client.listing(f"/apps/{segment(app)}/builds", f"{NEWEST_FIRST}, max=1", limit=1)
    if not newest:
        raise ClientError(
            f"{app} has no builds yet; deploy it with `git push {DEFAULT_REMOTE} main`"
        )
    return newest[0]


def find_build(client: Client, app: str, identity: str | None) -> Json:
    """The build ``identity`` names (a full id or its first characters); else the latest."""
    if identity is None:
        return _latest(client, app)
    wanted = identity.strip().lower()
    try:
        uuid.UUID(wanted)
    except ValueError:
        pass
    else:
        found: Json = client.get(f"/apps/{segment(app)}/builds/{segment(wanted)}")
        return found
    if len(wanted) < 4 or any(c not in "0123456789abcdef-" for c in wanted):
        raise ClientError(
            f"{identity!r} is not a build id; give one (or its first 4 or more characters) "
            f"as `dockyard builds -a {app}` lists them"
        )
    # Paged by id: any order will do for a prefix, and ids page cleanly.
    matches = [
        build
        for build in client.pages(f"/apps/{segment(app)}/builds", "id ..; max=1000")
        if str(build.get("id", "")).startswith(wanted)
    ]
    if not matches:
        raise ClientError(f"Couldn't find build {identity} of {app}; `dockyard builds` lists them")
    if len(matches) > 1:
        raise ClientError(
            f"{len(matches)} builds of {app} start with {identity}; give more of the id"
        )
    return matches[0]


@click.command("builds")
@app_options
@click.option(
    "-n", "--num", default=15, show_default=True, type=click.IntRange(1), help="How many to show."
)
@json_option
def builds_list(app: str, num: int, as_json: bool) -> None:
    """List an app's builds, newest first: id, status, commit, who pushed it, when.

    The ids are shortened; `builds:info` and `builds:output` take them as shown.
    """
    with connect() as client:
        found = client.listing(
            f"/apps/{segment(app)}/builds", f"{NEWEST_FIRST}, max={min(num, 1000)}", limit=num
        )
    if as_json:
        output.json(found)
        return
    if not found:
        output.message(f"{app} has no builds yet; deploy it with `git push {DEFAULT_REMOTE} main`.")
        return
    output.header(f"{app} Builds")
    output.line()
    output.table(
        [
            [
                _short(build),
                str(build.get("status", "")),
                _commit(build)[:7],
                _user(build),
                output.when(build.get("created_at")),
            ]
            for build in found
        ]
    )


@click.command("builds:info")
@click.argument("build", required=False)
@app_options
@json_option
def builds_info(app: str, build: str | None, as_json: bool) -> None:
    """Show one build (the latest if BUILD is not given): status, commit, slug, release.

    \b
    Examples:
      dockyard builds:info -a my-app
      dockyard builds:info 1a2b3c4d -a my-app
    """
    with connect() as client:
        found = find_build(client, app, build)
        if as_json:
            output.json(found)
            return
        release = found.get("release") or {}
        version = None
        if release.get("id"):
            shown = client.get(f"/apps/{segment(app)}/releases/{segment(str(release['id']))}")
            version = f"v{shown['version']}"
    output.header(f"Build {found['id']}")
    buildpacks = [str(b.get("url", "")) for b in found.get("buildpacks") or []]
    details = {
        "Buildpacks": ", ".join(buildpacks) or "detected at build time",
        "By": _user(found),
        "Commit": _commit(found),
        "Created": output.when(found.get("created_at")),
        "Failure": found.get("failure_message"),
        "Release": version,
        "Slug": (found.get("slug") or {}).get("id"),
        "Stack": found.get("stack"),
        "Status": found.get("status"),
    }
    output.pairs({key: value for key, value in details.items() if value is not None})


@click.command("builds:output")
@click.argument("build", required=False)
@app_options
def builds_output(app: str, build: str | None) -> None:
    """Print a build's output (the latest build's if BUILD is not given).

    While the build runs, the output is followed live until the build ends.

    \b
    Examples:
      dockyard builds:output -a my-app
      dockyard builds:output 1a2b3c4d -a my-app
    """
    with connect() as client:
        found = find_build(client, app, build)
    url = found.get("output_stream_url")
    if not url:
        raise ClientError(f"build {found.get('id')} has no output to show")
    stream(str(url))


def stream(url: str, what: str = "the build output") -> None:
    """Copy the text at ``url`` to stdout as it comes; the signed URL needs no token.

    ``what`` names it in errors (the build output, the release output).
    """
    stdout = sys.stdout.buffer
    # A build may print nothing for minutes (a long compile step): no read timeout.
    timeout = httpx.Timeout(TIMEOUT, read=None)
    try:
        with httpx.stream("GET", url, timeout=timeout) as response:
            if response.status_code >= 400:
                response.read()
                raise _stream_error(url, response, what)
            for chunk in response.iter_bytes():
                stdout.write(chunk)
                stdout.flush()
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise Unreachable(f"cannot read {what} at {_without_token(url)}: {exc}") from exc
    except BrokenPipeError:
        # `dockyard builds:output | head` closed the pipe: stop quietly, and keep Python from
        # failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _without_token(url: str) -> str:
    """``url`` fit to show: without the query, which holds the signature."""
    return url.partition("?")[0]


def _stream_error(url: str, response: httpx.Response, what: str) -> ClientError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return ApiError(body["message"], status=response.status_code, id=str(body.get("id", "")))
    return ApiError(
        f"{what} at {_without_token(url)} answered {response.status_code}",
        status=response.status_code,
        id="",
    )


@click.command("builds:cache:purge")
@app_options
@click.option("--confirm", metavar="APP", help="The app's name again, to confirm.")
def builds_cache_purge(app: str, confirm: str | None) -> None:
    """Empty an app's build cache; the next build downloads its dependencies again.

    Asks you to type the app's name, or takes it from --confirm APP (needed when not run
    from a terminal).

    \b
    Example:
      dockyard builds:cache:purge -a my-app --confirm my-app
    """
    if confirm is None and sys.stdin.isatty():
        output.warn(
            f"This will empty the build cache of {output.hexagon(app)}.\n"
            f"     To proceed, type {app} or re-run this command with --confirm {app}"
        )
        confirm = click.prompt("", prompt_suffix="> ", err=True, default="", show_default=False)
    if confirm != app:
        if confirm is None:
            raise ClientError(
                f"purging the build cache of {app} cannot be undone: "
                f"re-run with --confirm {app} to proceed"
            )
        raise ClientError(f"Confirmation {confirm!r} did not match {app}. Aborted.")
    with connect() as client, output.action(f"Purging build cache for {output.hexagon(app)}"):
        # The API answers 202 with no body, so this is not client.delete (which reads JSON).
        client.request("DELETE", f"/apps/{segment(app)}/build-cache")


COMMANDS = (builds_list, builds_info, builds_output, builds_cache_purge)
