"""``apps``, ``apps:create``, ``apps:info``, ``apps:rename``, ``apps:destroy``, ``git:remote``."""

from __future__ import annotations

import sys

import click

from dockyard.cli import credentials, git, output
from dockyard.cli.client import Json, api_host, connect, segment
from dockyard.cli.errors import ClientError, NoApp
from dockyard.cli.options import DEFAULT_REMOTE, app_options, json_option, resolve_app

DEFAULT_SSH_PORT = 2222


def _urls(app: Json) -> str:
    return f"{app.get('web_url', '')} | {app.get('git_url', '')}"


def _remotes_of(app: str) -> list[str]:
    """Remotes of the current repository that point at ``app`` on this server."""
    host = api_host(credentials.api_url())
    return [
        name
        for name, url in git.remotes().items()
        if git.app_from_url(url) == app and git.host_of(url) == host
    ]


@click.command("apps")
@json_option
def apps_list(as_json: bool) -> None:
    """List your apps, and the apps shared with you.

    Admins see every app; the ones they do not own are listed after their own.
    """
    with connect() as client:
        found = client.listing("/apps")
        if as_json:
            output.json(found)
            return
        if not found:
            output.message("You have no apps.")
            return
        account = client.get("/account")
    email = str(account.get("email", ""))
    mine: list[Json] = []
    others: list[Json] = []
    for app in found:
        (mine if (app.get("owner") or {}).get("email") == email else others).append(app)
    if mine:
        output.header(f"{email} Apps")
        for app in mine:
            output.line(str(app["name"]))
    if others:
        if mine:
            output.line()
        output.header("Other users' apps" if account.get("admin") else "Collaborated Apps")
        output.table(
            [[str(a["name"]), str((a.get("owner") or {}).get("email", ""))] for a in others]
        )


@click.command("apps:create")
@click.argument("name", required=False)
@click.option(
    "-r",
    "--remote",
    default=DEFAULT_REMOTE,
    show_default=True,
    metavar="REMOTE",
    help="Name of the git remote to add for the app.",
)
@click.option("--no-remote", is_flag=True, help="Do not add a git remote.")
@json_option
def apps_create(name: str | None, remote: str, no_remote: bool, as_json: bool) -> None:
    """Create an app; a random name is picked when NAME is not given.

    Prints the app's web URL and git URL. Run inside a git repository, it also adds a git
    remote (`dockyard` unless --remote says otherwise) so that `git push dockyard main`
    deploys and later commands find the app without -a.

    \b
    Examples:
      dockyard apps:create
      dockyard apps:create my-app --remote staging
    """
    label = output.hexagon(name) if name else "app"
    with connect() as client, output.action(f"Creating {label}") as done:
        app = client.post("/apps", {"name": name} if name else {})
        if not name:
            done.append(output.hexagon(str(app["name"])))
    if not no_remote and git.in_repository():
        how = git.set_remote(remote, str(app["git_url"]))
        output.message(f"Git remote {remote} {how}")
    if as_json:
        output.json(app)
    else:
        output.line(_urls(app))


@click.command("apps:info")
@app_options
@json_option
def apps_info(app: str, as_json: bool) -> None:
    """Show an app's details: owner, collaborators, URLs, stack, region."""
    with connect() as client:
        found = client.get(f"/apps/{segment(app)}")
        collaborators = client.listing(f"/apps/{segment(app)}/collaborators")
        addons = client.listing(f"/apps/{segment(app)}/addons")
    if as_json:
        # The Heroku CLI's shape, so that `jq .app.web_url` scripts keep working.
        output.json({"app": found, "addons": addons, "collaborators": collaborators})
        return
    output.header(str(found["name"]))
    emails = [str((c.get("user") or {}).get("email", "")) for c in collaborators]
    output.pairs(
        {
            "Addons": ", ".join(str((a.get("plan") or {}).get("name", "")) for a in addons),
            "Collaborators": ", ".join(emails),
            "Git URL": found.get("git_url"),
            "Maintenance": "on" if found.get("maintenance") else "off",
            "Owner": (found.get("owner") or {}).get("email"),
            "Region": (found.get("region") or {}).get("name"),
            "Released At": output.when(found.get("released_at")),
            "Stack": (found.get("stack") or {}).get("name"),
            "Web URL": found.get("web_url"),
        }
    )


@click.command("apps:rename")
@click.argument("new_name", metavar="NEWNAME")
@app_options
def apps_rename(app: str, new_name: str) -> None:
    """Rename an app; its git remotes in this repository are pointed at the new name.

    Other checkouts keep their old remote: update them with
    `git remote set-url dockyard <new git URL>`.
    """
    remotes = _remotes_of(app)
    with connect() as client, output.action(f"Renaming {app} to {new_name}"):
        renamed = client.patch(f"/apps/{segment(app)}", {"name": new_name})
    output.line(_urls(renamed))
    current = git.remotes()
    for remote in remotes:
        git.set_remote(remote, git.with_app(current[remote], new_name))
        output.message(f"Git remote {remote} updated")
    output.warn("Don't forget to update git remotes for all other local checkouts of the app.")


@click.command("apps:destroy")
@click.argument("app_argument", metavar="[APP]", required=False)
@click.option("-a", "--app", metavar="APP", help="App to destroy.")
@click.option("-r", "--remote", metavar="REMOTE", help="Git remote of the app to destroy.")
@click.option("--confirm", metavar="APP", help="The app's name again, to confirm.")
def apps_destroy(
    app_argument: str | None, app: str | None, remote: str | None, confirm: str | None
) -> None:
    """Destroy an app and everything it holds, for good.

    Asks you to type the app's name, or takes it from --confirm APP (needed when not run
    from a terminal). Git remotes of this repository that point at the app are removed.

    \b
    Example:
      dockyard apps:destroy -a my-app --confirm my-app
    """
    name = resolve_app(app_argument or app, remote)
    if confirm is None and sys.stdin.isatty():
        output.warn(
            f"This will delete {output.hexagon(name)} including all add-ons.\n"
            f"     To proceed, type {name} or re-run this command with --confirm {name}"
        )
        confirm = click.prompt("", prompt_suffix="> ", err=True, default="", show_default=False)
    if confirm != name:
        if confirm is None:
            raise ClientError(
                f"destroying {name} cannot be undone: re-run with --confirm {name} to proceed"
            )
        raise ClientError(f"Confirmation {confirm!r} did not match {name}. Aborted.")
    pointing = _remotes_of(name)
    label = f"Destroying {output.hexagon(name)} (including all add-ons)"
    with connect() as client, output.action(label):
        client.delete(f"/apps/{segment(name)}")
    for stale in pointing:
        git.remove_remote(stale)
        output.message(f"Git remote {stale} removed")


@click.command("git:remote")
@click.option(
    "-a",
    "--app",
    metavar="APP",
    help="App to set the remote for. Default: the app the remote already points at.",
)
@click.option(
    "-r",
    "--remote",
    default=DEFAULT_REMOTE,
    show_default=True,
    metavar="NAME",
    help="Name of the git remote to add, or to point at the app if it exists.",
)
@click.option("--ssh", "use_ssh", is_flag=True, help="Use the app's SSH git URL instead of HTTP.")
@click.option(
    "--ssh-port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_SSH_PORT,
    show_default=True,
    envvar="DOCKYARD_SSH_PORT",
    show_envvar=True,
    metavar="PORT",
    help="The server's git-over-SSH port (its DOCKYARD_SSH_PORT), for --ssh.",
)
def git_remote(app: str | None, remote: str, use_ssh: bool, ssh_port: int) -> None:
    """Add a git remote for an app to this repository, or point an existing one at it.

    The remote (`dockyard` unless -r says otherwise) gets the app's HTTP git URL, which
    uses the token `dockyard login` saved in ~/.netrc. With --ssh it gets
    ssh://git@<API host>:<PORT>/<app>.git instead, which uses an SSH key added with
    `dockyard keys:add`; the API does not say which port the server's SSH receiver
    listens on, so give --ssh-port (or set DOCKYARD_SSH_PORT) when it is not 2222.

    Without -a, the app is the one the remote already points at: `dockyard git:remote
    --ssh` switches the `dockyard` remote of an app to SSH.

    \b
    Examples:
      dockyard git:remote -a my-app
      dockyard git:remote -a my-app -r staging
      dockyard git:remote --ssh --ssh-port 2022
    """
    if not git.in_repository():
        raise ClientError(
            "not in a git repository: run this in your app's repository (or `git init` first)"
        )
    if app is None:
        current = git.remotes().get(remote)
        app = git.app_from_url(current) if current else None
        if app is None:
            which = f"git remote {remote!r} " + (
                f"({current}) does not point at an app" if current else "does not exist"
            )
            raise NoApp(f"no app specified and {which}: give one with -a APP")
    with connect() as client:
        found = client.get(f"/apps/{segment(app)}")
    name = str(found["name"])
    if use_ssh:
        url = git.ssh_url(api_host(credentials.api_url()), ssh_port, name)
    else:
        url = str(found["git_url"])
    git.set_remote(remote, url)
    output.message(f"set git remote {remote} to {url}")




@click.command("git:deploy-branch")
@click.argument("branch", required=False)
@click.option("--reset", is_flag=True, help="Go back to the default: main, or master if pushed.")
@app_options
def git_deploy_branch(app: str, branch: str | None, reset: bool) -> None:
    """Show or set the branch whose pushes deploy the app.

    By default pushes to main deploy (or to master, when that is what is pushed); pushes
    to any other branch are refused. `git:deploy-branch production` makes production the
    one that deploys; `--reset` goes back to the default.
    """
    with connect() as client:
        if branch is None and not reset:
            found = client.get(f"/apps/{segment(app)}")
            output.line(str(found.get("deploy_branch") or "main (or master, when pushed)"))
            return
        with output.action(f"Setting the deploy branch of {app}"):
            client.patch(f"/apps/{segment(app)}", {"deploy_branch": "" if reset else branch})
    shown = branch if branch and not reset else "main (or master)"
    output.message(f"Pushes to {shown} deploy {app}")


COMMANDS = (
    apps_list,
    apps_create,
    apps_info,
    apps_rename,
    apps_destroy,
    git_remote,
    git_deploy_branch,
)
