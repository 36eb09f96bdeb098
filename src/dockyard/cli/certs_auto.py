"""``certs:auto``, ``certs:auto:enable``, ``certs:auto:refresh``, ``certs:auto:disable``.

Automated Certificate Management: with it on, every custom domain of the app gets a
certificate from the platform's ACME CA (Let's Encrypt unless the operator chose another),
renewed 30 days before it expires. ``certs:auto`` shows each domain's status, and why one
failed in the CA's words.
"""

from __future__ import annotations

import contextlib
import sys
import time

import click

from dockyard.cli import output
from dockyard.cli.client import Client, Json, connect, segment
from dockyard.cli.errors import ClientError
from dockyard.cli.options import app_options, json_option

WAIT_INTERVAL = 2.0  # seconds between looks with --wait
WAIT_TIMEOUT = 600.0
_DONE = ("cert issued", "failed")


def humanize(status: object) -> str:
    """Heroku's words for an ``acm_status``: ``Cert issued``, ``Failed``, ``Waiting``."""
    if not status:
        return "Waiting"
    text = str(status)
    return {"ok": "OK", "verified": "In Progress", "dns-verified": "DNS Verified"}.get(
        text, " ".join(word[:1].upper() + word[1:] for word in text.split("-"))
    )


def _custom(client: Client, app: str) -> list[Json]:
    found = client.listing(f"/apps/{segment(app)}/domains")
    return sorted((d for d in found if d.get("kind") == "custom"), key=lambda d: d["hostname"])


def _wait(client: Client, app: str) -> list[Json]:
    """Poll until every custom domain has a certificate or has failed (or the timeout)."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    with output.action("Waiting until the certificate is issued to all domains"):
        while True:
            domains = _custom(client, app)
            if all(d.get("acm_status") in _DONE for d in domains):
                break
            if time.monotonic() > deadline:
                raise ClientError(
                    f"certificates were not issued within {WAIT_TIMEOUT:.0f}s; "
                    f"see `dockyard certs:auto -a {app}`"
                )
            time.sleep(WAIT_INTERVAL)  # polling the API: it pushes nothing
    if any(d.get("acm_status") == "failed" for d in domains):
        raise ClientError(
            "the certificate could not be issued to all domains; "
            f"see `dockyard certs:auto -a {app}`"
        )
    return domains


@click.command("certs:auto")
@app_options
@click.option("--wait", is_flag=True, help="Wait until every domain has its certificate.")
@json_option
def certs_auto(app: str, wait: bool, as_json: bool) -> None:
    """Show Automated Certificate Management's status for each of an app's domains.

    \b
    Example:
      $ dockyard certs:auto -a my-app
      === Automatic Certificate Management is enabled on ⬢ my-app
      Domain           Status       Last Updated
      www.example.org  Cert issued  2026/01/05 10:00:00 +0000 (~ 3m ago)
    """
    with connect() as client:
        found = client.get(f"/apps/{segment(app)}")
        if wait and found.get("acm"):
            with contextlib.suppress(ClientError):  # the table below shows what failed
                _wait(client, app)
        domains = _custom(client, app)
    if as_json:
        output.json(domains)
        return
    if not found.get("acm"):
        output.header(f"Automatic Certificate Management is disabled on {output.hexagon(app)}")
        return
    output.header(f"Automatic Certificate Management is enabled on {output.hexagon(app)}")
    if not domains:
        output.line()
        output.message(
            f"Add a custom domain to your app by running: dockyard domains:add <yourdomain.com> "
            f"-a {app}"
        )
        return
    reasons = any(d.get("acm_status_reason") for d in domains)
    headers = ["Domain", "Status", *(["Reason"] if reasons else []), "Last Updated"]
    output.table(
        [
            [
                str(d["hostname"]),
                humanize(d.get("acm_status")),
                *([str(d.get("acm_status_reason") or "")] if reasons else []),
                output.when(d.get("updated_at")),
            ]
            for d in domains
        ],
        headers,
    )
    if any(d.get("acm_status") == "failed" for d in domains):
        output.line()
        output.message(
            "Some domains failed validation; they are tried again with a growing back-off. "
            f"Check that their DNS points here (`dockyard domains -a {app}`), then retry now "
            f"with `dockyard certs:auto:refresh -a {app}`."
        )


@click.command("certs:auto:enable")
@app_options
@click.option("--wait", is_flag=True, help="Wait until every domain has its certificate.")
def certs_auto_enable(app: str, wait: bool) -> None:
    """Enable Automated Certificate Management: each custom domain gets a certificate.

    Point each domain's DNS at the app's DNS target (`dockyard domains`) first: the CA checks
    that the domain reaches this server before it issues the certificate.
    """
    with connect() as client:
        with output.action("Enabling Automatic Certificate Management") as done:
            client.post(f"/apps/{segment(app)}/acm", {})
            done.append("starting")
        if wait:
            _wait(client, app)
        else:
            output.message(
                f"See status with `dockyard certs:auto -a {app}` or wait until active with "
                f"`dockyard certs:auto -a {app} --wait`."
            )


@click.command("certs:auto:refresh")
@app_options
def certs_auto_refresh(app: str) -> None:
    """Order certificates again, now, for the domains whose order failed."""
    with (
        connect() as client,
        output.action("Refreshing Automatic Certificate Management"),
    ):
        client.patch(f"/apps/{segment(app)}/acm", {"acm_refresh": True})


@click.command("certs:auto:disable")
@app_options
@click.option("--confirm", metavar="APP", help="The app's name again, to confirm.")
def certs_auto_disable(app: str, confirm: str | None) -> None:
    """Disable Automated Certificate Management and remove its certificates.

    The app's custom domains are then served over HTTPS only with certificates you upload
    (`dockyard certs:add`). Asks you to type the app's name, or takes --confirm APP.
    """
    if confirm is None and sys.stdin.isatty():
        output.warn(
            f"This will remove the automated certificates of {output.hexagon(app)}: its custom "
            "domains fail TLS validation until you upload certificates for them.\n"
            f"     To proceed, type {app} or re-run this command with --confirm {app}"
        )
        confirm = click.prompt("", prompt_suffix="> ", err=True, default="", show_default=False)
    if confirm != app:
        if confirm is None:
            raise ClientError(
                f"disabling ACM removes {app}'s certificates: re-run with --confirm {app}"
            )
        raise ClientError(f"Confirmation {confirm!r} did not match {app}. Aborted.")
    with (
        connect() as client,
        output.action("Disabling Automatic Certificate Management"),
    ):
        client.delete(f"/apps/{segment(app)}/acm")


COMMANDS = (certs_auto, certs_auto_enable, certs_auto_refresh, certs_auto_disable)
