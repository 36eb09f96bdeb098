"""``releases``, ``releases:info``, ``releases:output``, ``releases:rollback`` (``rollback``)."""

from __future__ import annotations

import click

from dockyard.cli import output
from dockyard.cli.builds import stream
from dockyard.cli.client import Client, Json, connect, segment
from dockyard.cli.config import latest_release, show_config, warn_if_pending
from dockyard.cli.errors import ClientError
from dockyard.cli.options import app_options, json_option

NEWEST_FIRST = "version ..; order=desc"


def _version(text: str) -> str:
    digits = text.strip().removeprefix("v").removeprefix("V")
    if not digits.isdigit():
        raise ClientError(f"{text!r} is not a release version; give one like v4 (or 4)")
    return digits


def _current(client: Client, app: str) -> Json:
    for release in client.pages(f"/apps/{segment(app)}/releases", NEWEST_FIRST):
        if release.get("current"):
            return release
    raise ClientError(f"{app} has no current release")


def _user(release: Json) -> str:
    return str((release.get("user") or {}).get("email", ""))


# What the releases table adds to a release's description, as Heroku's CLI does.
STATUS_NOTES = {"pending": "release command executing", "failed": "release command failed"}


@click.command("releases")
@app_options
@click.option(
    "-n", "--num", default=15, show_default=True, type=click.IntRange(1), help="How many to show."
)
@json_option
def releases_list(app: str, num: int, as_json: bool) -> None:
    """List an app's releases, newest first: version, description, who made it, when."""
    with connect() as client:
        found = client.listing(
            f"/apps/{segment(app)}/releases", f"{NEWEST_FIRST}, max={min(num, 1000)}", limit=num
        )
    if as_json:
        output.json(found)
        return
    if not found:
        output.message(f"{app} has no releases.")
        return
    current = next((r for r in found if r.get("current")), None)
    output.header(f"{app} Releases" + (f" - Current: v{current['version']}" if current else ""))
    output.line()
    rows = []
    for release in found:
        description = str(release.get("description", ""))
        status = release.get("status")
        if status not in (None, "succeeded"):
            description += f" {STATUS_NOTES.get(str(status), str(status))}"
        rows.append(
            [
                f"v{release['version']}",
                description,
                _user(release),
                output.when(release.get("created_at")),
            ]
        )
    output.table(rows)


@click.command("releases:info")
@click.argument("release", required=False, metavar="[vN]")
@app_options
@click.option("-s", "--shell", is_flag=True, help="Print its config vars as KEY=value lines.")
@json_option
def releases_info(app: str, release: str | None, shell: bool, as_json: bool) -> None:
    """Show one release (the current one if no version is given) and its config vars."""
    with connect() as client:
        if release is None:
            found = _current(client, app)
        else:
            found = client.get(f"/apps/{segment(app)}/releases/{_version(release)}")
        values = client.get(f"/apps/{segment(app)}/releases/{found['version']}/config-vars")
    if as_json:
        output.json(found)
        return
    output.header(f"Release v{found['version']}")
    output.pairs(
        {
            "Add-ons": ", ".join(found.get("addon_plan_names") or []),
            "By": _user(found),
            "Change": found.get("description"),
            "Current": str(bool(found.get("current"))).lower(),
            "Status": found.get("status"),
            "When": output.when(found.get("created_at")),
        }
    )
    output.line()
    output.header(f"v{found['version']} Config vars")
    output.line()
    show_config(values, shell=shell, as_json=False)


@click.command("releases:output")
@click.argument("release", required=False, metavar="[vN]")
@app_options
def releases_output(app: str, release: str | None) -> None:
    """Print the output of a release's release command (the newest release's by default).

    While the release command runs, its output is followed live until it ends. A release
    has this output when its Procfile declares a `release:` process.

    \b
    Examples:
      dockyard releases:output -a my-app
      dockyard releases:output v12 -a my-app
    """
    with connect() as client:
        if release is None:
            found = latest_release(client, app)
            if found is None:
                raise ClientError(f"{app} has no releases")
        else:
            found = client.get(f"/apps/{segment(app)}/releases/{_version(release)}")
    url = found.get("output_stream_url")
    if not url:
        output.warn(
            f"Release v{found['version']} has no release command output: its Procfile "
            "declares no release process."
        )
        return
    stream(str(url), "the release output")


_ROLLBACK_HELP = """Roll back to an earlier release: a new release with its code and config vars.

    Without a version, rolls back to the release before the current one. Add-ons and data
    (databases, files) are not rolled back.

    \b
    Examples:
      dockyard releases:rollback -a my-app
      dockyard releases:rollback v4 -a my-app
    """


@click.command("releases:rollback", help=_ROLLBACK_HELP)
@click.argument("release", required=False, metavar="[vN]")
@app_options
def releases_rollback(app: str, release: str | None) -> None:
    _rollback(app, release)


@click.command("rollback", help=_ROLLBACK_HELP.replace("releases:rollback", "rollback"))
@click.argument("release", required=False, metavar="[vN]")
@app_options
def rollback(app: str, release: str | None) -> None:
    _rollback(app, release)


def _rollback(app: str, release: str | None) -> None:
    with connect() as client:
        if release is None:
            current = _current(client, app)
            earlier = client.listing(
                f"/apps/{segment(app)}/releases",
                f"version {current['version'] - 1}..; max=1, order=desc",
                limit=1,
            )
            if not earlier:
                raise ClientError(
                    f"v{current['version']} is the first release of {app}; "
                    "there is nothing to roll back to"
                )
            target = str(earlier[0]["version"])
        else:
            target = _version(release)
        with output.action(f"Rolling back {output.hexagon(app)} to v{target}") as done:
            made = client.post(f"/apps/{segment(app)}/releases", {"release": target})
            done.append(f"v{made['version']}")
    warn_if_pending(made, "rollback")
    output.warn("Rollback affects code and config vars; it doesn't add or remove add-ons.")


COMMANDS = (releases_list, releases_info, releases_output, releases_rollback, rollback)
