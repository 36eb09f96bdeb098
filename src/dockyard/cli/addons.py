"""``addons`` and its ``addons:*`` commands, ``pg:psql``, ``pg:info`` and ``redis:cli``.

An add-on is named like ``postgresql-curved-12345``; on an app, the name it is attached as
(``DATABASE``) finds it too. Creating, attaching, detaching, rotating and destroying change
config vars, so each makes a release and restarts the app; the messages say which version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from urllib.parse import unquote, urlsplit, urlunsplit

import click

from dockyard.cli import output
from dockyard.cli.client import Client, Json, connect, segment
from dockyard.cli.errors import ClientError
from dockyard.cli.options import app_options, json_option, resolve_app


def latest_version(client: Client, app: str) -> str:
    releases = client.listing(
        f"/apps/{segment(app)}/releases", "version ..; max=1, order=desc", limit=1
    )
    return f"v{releases[0]['version']}" if releases else ""


def parse_options(args: tuple[str, ...]) -> dict[str, str]:
    """``--version 16 --fast --size=2`` → ``{"version": "16", "fast": "true", "size": "2"}``."""
    options: dict[str, str] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("--") or arg == "--":
            raise ClientError(
                f"add-on option {arg!r} is not --NAME VALUE: give options after `--`, like "
                "`dockyard addons:create postgres -- --version 16`"
            )
        name, sep, value = arg[2:].partition("=")
        if not sep:
            following = args[index + 1] if index + 1 < len(args) else None
            if following is not None and not following.startswith("--"):
                value = following
                index += 1
            else:
                value = "true"
        options[name] = value
        index += 1
    return options


def _plan(addon: Json) -> str:
    return str((addon.get("plan") or {}).get("name", ""))


def _attachments(client: Client, addon: Json) -> list[Json]:
    found: list[Json] = client.get(f"/addons/{segment(str(addon['id']))}/addon-attachments")
    return found


@click.command("addons")
@click.option("-a", "--app", metavar="APP", help="App to list the add-ons of.")
@click.option("-r", "--remote", metavar="REMOTE", help="Git remote of the app to use.")
@click.option("-A", "--all", "every", is_flag=True, help="List the add-ons of all your apps.")
@json_option
def addons_list(app: str | None, remote: str | None, every: bool, as_json: bool) -> None:
    """List an app's add-ons, and the names they are attached as.

    Without -a, -r or a git remote of an app (or with --all), lists the add-ons of every
    app you can see.

    \b
    Example:
      $ dockyard addons -a my-app
      Add-on                   Plan                State        Attached as
      postgresql-curved-12345  postgres:essential  provisioned  my-app::DATABASE
    """
    name = None
    if not every:
        try:
            name = resolve_app(app, remote)
        except ClientError:
            if app or remote:
                raise
    with connect() as client:
        found = client.listing(f"/apps/{segment(name)}/addons" if name else "/addons")
        if as_json:
            output.json(found)
            return
        if not found:
            output.message(f"No add-ons for {output.hexagon(name)}." if name else "No add-ons.")
            return
        rows = []
        for addon in found:
            attached = [f"{a['app']['name']}::{a['name']}" for a in _attachments(client, addon)]
            rows.append(
                [str(addon["name"]), _plan(addon), str(addon["state"]), ", ".join(attached)]
            )
    output.table(rows, ["Add-on", "Plan", "State", "Attached as"])
    failed = [a for a in found if a.get("state") == "failed"]
    for addon in failed:
        output.warn(f"{addon['name']} failed: {addon.get('provision_message')}")


@click.command("addons:create")
@click.argument("service")
@click.argument("options", nargs=-1, type=click.UNPROCESSED)
@app_options
@click.option("--as", "as_", metavar="NAME", help="Attach it as NAME (config vars NAME_URL…).")
@click.option("--name", metavar="NAME", help="The add-on's name; a random one by default.")
@json_option
def addons_create(  # noqa: PLR0917 - click passes each argument and option by name
    service: str,
    options: tuple[str, ...],
    app: str,
    as_: str | None,
    name: str | None,
    as_json: bool,
) -> None:
    """Provision an add-on (SERVICE or SERVICE:PLAN) and attach it to the app.

    The app gets the add-on's config vars (DATABASE_URL for the first postgres) in a new
    release and restarts. Options for the provider go after `--` (a plugin's provider may
    take some; the built-in services take none, and refuse any). If provisioning fails,
    the add-on is listed as failed with the reason and the app's config is untouched;
    create it again (with --name, the same add-on) to retry.

    \b
    Examples:
      dockyard addons:create postgres -a my-app
      dockyard addons:create postgres:standard --as ANALYTICS -a my-app
      dockyard addons:create redis --name my-cache -a my-app
      dockyard addons:create search -a my-app -- --language en   (a plugin's service)
    """
    body: Json = {"plan": service}
    if as_:
        body["attachment"] = {"name": as_}
    if name:
        body["name"] = name
    if options:
        body["config"] = parse_options(options)
    with connect() as client:
        with output.action(f"Creating {service} on {output.hexagon(app)}") as done:
            addon: Json = client.post(f"/apps/{segment(app)}/addons", body)
            done.append(latest_version(client, app))
        if as_json:
            output.json(addon)
            return
        names = ", ".join(addon.get("config_vars") or [])
        output.message(f"Created {addon['name']} as {names}")
        output.message(f"Use dockyard addons:info {addon['name']} to see it")


@click.command("addons:info")
@click.argument("addon")
@click.option("-a", "--app", metavar="APP", help="App the add-on is attached to.")
@json_option
def addons_info(addon: str, app: str | None, as_json: bool) -> None:
    """Show an add-on: its plan, state, owning app, attachments and what its server reports."""
    path = f"/apps/{segment(app)}/addons/{segment(addon)}" if app else f"/addons/{segment(addon)}"
    with connect() as client:
        found: Json = client.get(path)
        attachments = _attachments(client, found)
        details: dict[str, str] = client.get(f"/addons/{segment(str(found['id']))}/info")
    if as_json:
        output.json({**found, "attachments": attachments, "info": details})
        return
    output.header(str(found["name"]))
    values: dict[str, object] = {
        "Attachments": ", ".join(f"{a['app']['name']}::{a['name']}" for a in attachments),
        "Installed at": output.when(found.get("created_at")),
        "Owning app": found["app"]["name"],
        "Plan": _plan(found),
        "State": found["state"],
    }
    if found.get("provision_message"):
        values["Reason"] = found["provision_message"]
    values.update(details)
    output.pairs(values)


@click.command("addons:destroy")
@click.argument("addons", nargs=-1, required=True, metavar="ADDON...")
@app_options
@click.option("-c", "--confirm", metavar="APP", help="The app's name again, to confirm.")
def addons_destroy(addons: tuple[str, ...], app: str, confirm: str | None) -> None:
    """Deprovision add-ons, for good: their data is gone.

    Refused while an add-on is attached to another app (detach it there first). Asks you
    to type the app's name, or takes it from --confirm APP.

    \b
    Example:
      dockyard addons:destroy postgresql-curved-12345 -a my-app --confirm my-app
    """
    if confirm is None and sys.stdin.isatty():
        output.warn(
            f"This will destroy {', '.join(addons)} on {output.hexagon(app)} and its data.\n"
            f"     To proceed, type {app} or re-run this command with --confirm {app}"
        )
        confirm = click.prompt("", prompt_suffix="> ", err=True, default="", show_default=False)
    if confirm != app:
        if confirm is None:
            raise ClientError(f"destroying add-ons cannot be undone: re-run with --confirm {app}")
        raise ClientError(f"Confirmation {confirm!r} did not match {app}. Aborted.")
    with connect() as client:
        for addon in addons:
            label = f"Destroying {addon} on {output.hexagon(app)}"
            with output.action(label) as done:
                client.delete(f"/apps/{segment(app)}/addons/{segment(addon)}")
                done.append(latest_version(client, app))


@click.command("addons:attach")
@click.argument("addon")
@app_options
@click.option("--as", "as_", metavar="NAME", help="Attach it as NAME (config vars NAME_URL…).")
@json_option
def addons_attach(addon: str, app: str, as_: str | None, as_json: bool) -> None:
    """Attach an existing add-on (of this or another of your apps) to the app.

    \b
    Example:
      dockyard addons:attach postgresql-curved-12345 -a my-worker --as SHARED_DATABASE
    """
    body: Json = {"addon": addon, "app": app}
    if as_:
        body["name"] = as_
    label = f"Attaching {addon} to {output.hexagon(app)}"
    with connect() as client, output.action(label) as done:
        attachment: Json = client.post("/addon-attachments", body)
        done.append(latest_version(client, app))
    if as_json:
        output.json(attachment)
        return
    output.message(f"Attached {addon} as {attachment['name']}")


@click.command("addons:detach")
@click.argument("attachment")
@app_options
def addons_detach(attachment: str, app: str) -> None:
    """Detach an add-on from the app (by the name it is attached as, or its own name).

    The add-on and its data stay; its config vars leave the app in a new release.
    """
    label = f"Detaching {attachment} from {output.hexagon(app)}"
    with connect() as client, output.action(label) as done:
        client.delete(f"/apps/{segment(app)}/addon-attachments/{segment(attachment)}")
        done.append(latest_version(client, app))


@click.command("addons:plans")
@click.argument("service")
@json_option
def addons_plans(service: str, as_json: bool) -> None:
    """List a service's plans; the default one is marked."""
    with connect() as client:
        plans: list[Json] = client.get(f"/addon-services/{segment(service)}/plans")
    if as_json:
        output.json(plans)
        return
    output.table(
        [
            [
                "default" if p.get("default") else "",
                str(p["name"]),
                str(p.get("human_name", "")),
                str(p.get("description", "")),
            ]
            for p in plans
        ],
        ["", "Slug", "Name", "Description"],
    )


@click.command("addons:services")
@json_option
def addons_services(as_json: bool) -> None:
    """List the add-on services this platform offers."""
    with connect() as client:
        services: list[Json] = client.get("/addon-services")
    if as_json:
        output.json(services)
        return
    output.table(
        [
            [str(s["name"]), str(s.get("human_name", "")), str(s.get("description", ""))]
            for s in services
        ],
        ["Slug", "Name", "Description"],
    )


@click.command("addons:rotate")
@click.argument("addon")
@app_options
def addons_rotate(addon: str, app: str) -> None:
    """New credentials for an add-on; the old ones are revoked.

    Every app it is attached to gets them in a new release and restarts; once its dynos
    run the new release (or after 25 seconds), the old credentials are revoked and the
    connections still using them are closed.
    """
    with connect() as client:
        found: Json = client.get(f"/apps/{segment(app)}/addons/{segment(addon)}")
        label = f"Rotating the credentials of {found['name']} on {output.hexagon(app)}"
        with output.action(label) as done:
            client.post(f"/addons/{segment(str(found['id']))}/actions/rotate-credentials")
            done.append(latest_version(client, app))


def _change_plan(addon: str, plan: str, app: str, verb: str) -> None:
    with connect() as client:
        found: Json = client.get(f"/apps/{segment(app)}/addons/{segment(addon)}")
        label = f"Changing {found['name']} on {output.hexagon(app)} from {_plan(found)} to {plan}"
        with output.action(label):
            changed: Json = client.patch(
                f"/apps/{segment(app)}/addons/{segment(str(found['id']))}", {"plan": plan}
            )
    output.message(f"{found['name']} is {verb} to {_plan(changed)}; its config vars are unchanged")


@click.command("addons:upgrade")
@click.argument("addon")
@click.argument("plan")
@app_options
def addons_upgrade(addon: str, plan: str, app: str) -> None:
    """Move an add-on to a larger plan of its service.

    PLAN is a plan of the add-on's service, with or without the service (`premium`,
    `postgres:premium`); `dockyard addons:plans SERVICE` lists them. The new limits apply
    at once; credentials and config vars stay, so the app does not restart.

    \b
    Example:
      dockyard addons:upgrade DATABASE premium -a my-app
    """
    _change_plan(addon, plan, app, "upgraded")


@click.command("addons:downgrade")
@click.argument("addon")
@click.argument("plan")
@app_options
def addons_downgrade(addon: str, plan: str, app: str) -> None:
    """Move an add-on to a smaller plan of its service.

    Refused when what the add-on holds does not fit the smaller plan (a database larger
    than its size limit, a Redis using more memory).

    \b
    Example:
      dockyard addons:downgrade DATABASE essential -a my-app
    """
    _change_plan(addon, plan, app, "downgraded")


# --- pg and redis -----------------------------------------------------------------------


def _attached_url(client: Client, app: str, service: str, which: str | None) -> tuple[str, str]:
    """The attachment name and URL of ``which`` (an attachment or add-on name), or of the
    app's first ``service`` add-on (``DATABASE`` first for postgres)."""
    attachments: list[Json] = client.get(f"/apps/{segment(app)}/addon-attachments")
    config: dict[str, str] = client.get(f"/apps/{segment(app)}/config-vars")
    candidates = []
    for attachment in attachments:
        addon: Json = client.get(f"/addons/{segment(str(attachment['addon']['id']))}")
        if addon["addon_service"]["name"] != service:
            continue
        if which in (None, attachment["name"], addon["name"], f"{attachment['name']}_URL"):
            candidates.append(str(attachment["name"]))
    candidates.sort(key=lambda name: (name != "DATABASE", name))
    if not candidates:
        what = f"{which!r}" if which else f"a {service} add-on"
        raise ClientError(
            f"{output.hexagon(app)} has no {what} attached; `dockyard addons -a {app}` lists them"
        )
    url = config.get(f"{candidates[0]}_URL")
    if not url:
        raise ClientError(f"{candidates[0]}_URL is not set on {app}")
    return candidates[0], url


def _without_password(url: str) -> tuple[str, str]:
    """``url`` without its password (which goes in an environment variable instead)."""
    parts = urlsplit(url)
    password = unquote(parts.password or "")
    user = f"{parts.username}@" if parts.username else ""
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, "")), password


def _run(argv: list[str], env: dict[str, str], tool: str, package: str) -> None:
    if shutil.which(argv[0]) is None:
        raise ClientError(f"{tool} is not installed here: install it (apt-get install {package})")
    done = subprocess.run(argv, env={**os.environ, **env}, check=False)
    if done.returncode:
        sys.exit(done.returncode)


@click.command("pg:psql")
@click.argument("database", required=False)
@app_options
@click.option("-c", "--command", metavar="SQL", help="Run this SQL and exit.")
@click.option("-f", "--file", metavar="FILE", help="Run the SQL in FILE and exit.")
def pg_psql(database: str | None, app: str, command: str | None, file: str | None) -> None:
    """Open psql on an app's PostgreSQL add-on (DATABASE by default).

    \b
    Examples:
      dockyard pg:psql -a my-app
      dockyard pg:psql ANALYTICS -a my-app -c 'SELECT count(*) FROM posts'
    """
    with connect() as client:
        name, url = _attached_url(client, app, "postgres", database)
    bare, password = _without_password(url)
    output.message(f"--> Connecting to {name}")
    argv = ["psql", bare]
    if command:
        argv += ["-c", command]
    if file:
        argv += ["-f", file]
    _run(argv, {"PGPASSWORD": password}, "psql", "postgresql-client")


@click.command("pg:info")
@click.argument("database", required=False)
@app_options
@json_option
def pg_info(database: str | None, app: str, as_json: bool) -> None:
    """Show an app's PostgreSQL add-ons: plan, state, connections, size, tables, version."""
    with connect() as client:
        attachments: list[Json] = client.get(f"/apps/{segment(app)}/addon-attachments")
        shown: list[Json] = []
        for attachment in sorted(attachments, key=lambda a: (a["name"] != "DATABASE", a["name"])):
            addon: Json = client.get(f"/addons/{segment(str(attachment['addon']['id']))}")
            if addon["addon_service"]["name"] != "postgres":
                continue
            if database not in (None, attachment["name"], addon["name"]):
                continue
            details = client.get(f"/addons/{segment(str(addon['id']))}/info")
            shown.append({"attachment": attachment["name"], "addon": addon, "info": details})
    if as_json:
        output.json(shown)
        return
    if not shown:
        raise ClientError(f"{output.hexagon(app)} has no PostgreSQL add-on attached")
    for index, entry in enumerate(shown):
        if index:
            output.line()
        output.header(f"{entry['attachment']}_URL")
        output.pairs(
            {
                "Plan": _plan(entry["addon"]),
                "Add-on": entry["addon"]["name"],
                "Created": output.when(entry["addon"].get("created_at")),
                **entry["info"],
            }
        )


@click.command("redis:cli")
@click.argument("database", required=False)
@app_options
@click.option(
    "-c",
    "--command",
    "commands",
    multiple=True,
    metavar="CMD",
    help="Run this command and exit (repeatable).",
)
def redis_cli(database: str | None, app: str, commands: tuple[str, ...]) -> None:
    """Open redis-cli on an app's Redis add-on (REDIS by default).

    \b
    Examples:
      dockyard redis:cli -a my-app
      dockyard redis:cli -a my-app -c 'GET greeting'
    """
    with connect() as client:
        name, url = _attached_url(client, app, "redis", database)
    parts = urlsplit(url)
    argv = [
        "redis-cli",
        "-h",
        str(parts.hostname),
        "-p",
        str(parts.port or 6379),
        "--no-auth-warning",
    ]
    if parts.username:
        argv += ["--user", unquote(parts.username)]
    env = {"REDISCLI_AUTH": unquote(parts.password or "")}
    output.message(f"Connecting to {name}")
    if not commands:
        _run(argv, env, "redis-cli", "redis-tools")
        return
    for command in commands:
        _run([*argv, *command.split()], env, "redis-cli", "redis-tools")


COMMANDS = (
    addons_list,
    addons_create,
    addons_info,
    addons_destroy,
    addons_attach,
    addons_detach,
    addons_plans,
    addons_services,
    addons_rotate,
    addons_upgrade,
    addons_downgrade,
    pg_psql,
    pg_info,
    redis_cli,
)
