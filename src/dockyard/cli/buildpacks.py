"""``buildpacks`` and ``buildpacks:add``, ``:set``, ``:remove``, ``:clear``: what builds run.

An app with no buildpacks set has them detected at build time (python, nodejs, static,
procfile). Indexes are 1-based, as in the Heroku CLI. Each command reads the list, changes
it here and writes the whole new list back (``PUT /apps/{app}/buildpack-installations``).
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from dockyard.cli import output
from dockyard.cli.client import Client, Json, connect, segment
from dockyard.cli.errors import ClientError
from dockyard.cli.options import DEFAULT_REMOTE, app_options, json_option

URL_HELP = (
    "URL is a git URL (https://…, git@…, ssh://…; add #REF for a branch or tag), a directory "
    "on the server (/path or file:///path), or builtin:NAME for a built-in buildpack."
)
_INDEX = click.IntRange(1)


def _path(app: str) -> str:
    return f"/apps/{segment(app)}/buildpack-installations"


def _urls(installations: list[Json]) -> list[str]:
    ordered = sorted(installations, key=lambda i: int(i.get("ordinal", 0)))
    return [str((i.get("buildpack") or {}).get("url", "")) for i in ordered]


def _current(client: Client, app: str) -> list[str]:
    return _urls(client.listing(_path(app)))


def _save(client: Client, app: str, urls: Sequence[str]) -> list[str]:
    body = {"updates": [{"buildpack": url} for url in urls]}
    return _urls(client.put(_path(app), body))


def _numbered(urls: Sequence[str]) -> None:
    for number, url in enumerate(urls, start=1):
        output.line(f"  {number}. {url}")


def _report(done: str, app: str, urls: Sequence[str]) -> None:
    """``Buildpack added. Next release on APP will use:`` and the list, as Heroku says it."""
    if not urls:
        output.line(f"{done} Next release on {app} will detect buildpacks normally.")
        return
    output.line(f"{done} Next release on {app} will use:")
    _numbered(urls)
    these = "this buildpack" if len(urls) == 1 else "these buildpacks"
    output.line(f"Run `git push {DEFAULT_REMOTE} main` to create a new release using {these}.")


def _url(given: str) -> str:
    url = given.strip()
    if not url:
        raise ClientError(f"the buildpack URL is empty. {URL_HELP}")
    return url


def _check_index(index: int, highest: int, count: int, app: str) -> None:
    """Fail when ``index`` is past ``highest``, saying what ``app``'s ``count`` allows."""
    if index > highest:
        choices = "1" if highest == 1 else f"a value between 1 and {highest}"
        has = f"{count} buildpack" + ("" if count == 1 else "s")
        raise ClientError(f"Invalid index {index}: {app} has {has}; choose {choices}.")


def _not_set_twice(urls: Sequence[str], url: str, app: str) -> None:
    if url in urls:
        raise ClientError(
            f"The buildpack {url} is already set on {app} (as number {urls.index(url) + 1})."
        )


@click.command("buildpacks")
@app_options
@json_option
def buildpacks_list(app: str, as_json: bool) -> None:
    """List the buildpacks an app's builds run, in order.

    With none set, each build detects its buildpack (python, nodejs, static, procfile).
    """
    with connect() as client:
        installations = client.listing(_path(app))
    if as_json:
        output.json(installations)
        return
    urls = _urls(installations)
    if not urls:
        output.message(
            f"{app} has no buildpacks set; they are detected at build time "
            "(add one with `dockyard buildpacks:add URL`)."
        )
        return
    output.header(f"{app} Buildpack URL" + ("s" if len(urls) > 1 else ""))
    output.line()
    _numbered(urls)


@click.command("buildpacks:add", epilog=URL_HELP)
@click.argument("url")
@click.option(
    "-i",
    "--index",
    type=_INDEX,
    metavar="N",
    help="Put it at position N (1 = first). Default: last.",
)
@app_options
def buildpacks_add(app: str, url: str, index: int | None) -> None:
    """Add a buildpack to an app's list; the next build runs it.

    Several buildpacks run in order, each seeing the environment the previous one exports.

    \b
    Examples:
      dockyard buildpacks:add https://github.com/heroku/heroku-buildpack-apt -a my-app
      dockyard buildpacks:add --index 1 /srv/buildpacks/mine -a my-app
    """
    url = _url(url)
    with connect() as client:
        urls = _current(client, app)
        _not_set_twice(urls, url, app)
        position = len(urls) + 1 if index is None else index
        _check_index(position, len(urls) + 1, len(urls), app)
        urls.insert(position - 1, url)
        saved = _save(client, app, urls)
    _report("Buildpack added.", app, saved)


@click.command("buildpacks:set", epilog=URL_HELP)
@click.argument("url")
@click.option(
    "-i",
    "--index",
    type=_INDEX,
    default=1,
    show_default=True,
    metavar="N",
    help="Replace the buildpack at position N (1 = first).",
)
@app_options
def buildpacks_set(app: str, url: str, index: int) -> None:
    """Set an app's buildpack, replacing the one at --index (the first by default).

    On an app with no buildpacks, sets its only one.

    \b
    Examples:
      dockyard buildpacks:set builtin:python -a my-app
      dockyard buildpacks:set --index 2 https://github.com/me/buildpack#v2 -a my-app
    """
    url = _url(url)
    with connect() as client:
        urls = _current(client, app)
        _not_set_twice(urls, url, app)
        _check_index(index, max(len(urls), 1), len(urls), app)
        if index > len(urls):
            urls.append(url)
        else:
            urls[index - 1] = url
        saved = _save(client, app, urls)
    _report("Buildpack set.", app, saved)


@click.command("buildpacks:remove")
@click.argument("url", required=False)
@click.option("-i", "--index", type=_INDEX, metavar="N", help="Remove the buildpack at position N.")
@app_options
def buildpacks_remove(app: str, url: str | None, index: int | None) -> None:
    """Remove one buildpack from an app's list, given by its URL or by --index N.

    \b
    Examples:
      dockyard buildpacks:remove https://github.com/heroku/heroku-buildpack-apt -a my-app
      dockyard buildpacks:remove --index 2 -a my-app
    """
    if (url is None) == (index is None):
        raise ClientError("give either the buildpack's URL or --index N, not both (nor neither)")
    with connect() as client:
        urls = _current(client, app)
        if not urls:
            raise ClientError(f"{app} has no buildpacks set; there is nothing to remove")
        if index is not None:
            _check_index(index, len(urls), len(urls), app)
            position = index
        else:
            wanted = _url(url or "")
            if wanted not in urls:
                raise ClientError(
                    f"Buildpack {wanted} is not set on {app}; nothing was removed "
                    "(`dockyard buildpacks` lists them)."
                )
            position = urls.index(wanted) + 1
        del urls[position - 1]
        saved = _save(client, app, urls)
    _report("Buildpack removed.", app, saved)


@click.command("buildpacks:clear")
@app_options
def buildpacks_clear(app: str) -> None:
    """Remove all of an app's buildpacks; its builds detect them again."""
    with connect() as client:
        _save(client, app, [])
    _report("Buildpacks cleared.", app, [])


COMMANDS = (buildpacks_list, buildpacks_add, buildpacks_set, buildpacks_remove, buildpacks_clear)
