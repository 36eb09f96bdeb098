"""``certs``, ``certs:add``, ``certs:update``, ``certs:remove``, ``certs:info``: an app's
uploaded TLS certificates (Heroku's SNI endpoints); ``certs:ca``: the local CA to trust; and
``https-only``, ``https-only:on``, ``https-only:off``: redirecting an app's HTTP to HTTPS.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dockyard.cli import output
from dockyard.cli.client import Client, Json, connect, segment
from dockyard.cli.errors import ClientError
from dockyard.cli.options import app_options, json_option


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read the {what} {path}: {exc}") from exc


def _endpoints(client: Client, app: str) -> list[Json]:
    return client.listing(f"/apps/{segment(app)}/sni-endpoints")


def _pick(client: Client, app: str, name: str | None) -> Json:
    """The certificate ``name``, or the app's only one."""
    if name is not None:
        found: Json = client.get(f"/apps/{segment(app)}/sni-endpoints/{segment(name)}")
        return found
    endpoints = _endpoints(client, app)
    if not endpoints:
        raise ClientError(f"{app} has no SSL certificates; add one with `dockyard certs:add`")
    if len(endpoints) > 1:
        names = ", ".join(str(e["name"]) for e in endpoints)
        raise ClientError(f"{app} has several SSL certificates ({names}): choose one with --name")
    return endpoints[0]


def _expires(endpoint: Json) -> str:
    cert = endpoint["ssl_cert"]
    stamp = str(cert.get("expires_at") or "")
    return stamp.replace("T", " ").replace("Z", " UTC") + (" (expired)" if cert["expired?"] else "")


def _show(endpoint: Json) -> None:
    cert = endpoint["ssl_cert"]
    output.pairs(
        {
            "Name": endpoint["name"],
            "Common Name(s)": ", ".join(cert["cert_domains"]),
            "Expires At": _expires(endpoint),
            "Issuer": cert["issuer"],
            "Starts At": str(cert["starts_at"]).replace("T", " ").replace("Z", " UTC"),
            "Subject": cert["subject"],
        }
    )
    if cert["self_signed?"]:
        output.line("SSL certificate is self signed.")
    else:
        output.line("SSL certificate is verified by a root authority.")


@click.command("certs")
@app_options
@json_option
def certs_list(app: str, as_json: bool) -> None:
    """List an app's uploaded SSL certificates and the hostnames each covers.

    \b
    Example:
      $ dockyard certs -a my-app
      Name         Common Name(s)    Expires                  Trusted  Type  Domains
      sloop-41357  www.example.org   2027-02-25 12:00:00 UTC  True     SNI   1
    """
    with connect() as client:
        endpoints = _endpoints(client, app)
    if as_json:
        output.json(endpoints)
        return
    if not endpoints:
        output.message(
            f"{app} has no SSL certificates.\nUse `dockyard certs:add CRT KEY` to add one."
        )
        return
    output.table(
        [
            [
                str(e["name"]),
                ", ".join(e["ssl_cert"]["cert_domains"]),
                _expires(e),
                str(not e["ssl_cert"]["self_signed?"]),
                "SNI",
                str(len(e["domains"])),
            ]
            for e in endpoints
        ],
        ["Name", "Common Name(s)", "Expires", "Trusted", "Type", "Domains"],
    )


@click.command("certs:add")
@click.argument("crt", metavar="CRT")
@click.argument("key", metavar="KEY")
@app_options
@json_option
def certs_add(app: str, crt: str, key: str, as_json: bool) -> None:
    """Add an SSL certificate: CRT is the PEM chain (the site's certificate and its
    intermediates, in any order), KEY its unencrypted PEM private key.

    The router serves it at once, by SNI, for the app's hostnames it covers (a hostname
    named exactly beats a wildcard). A certificate that does not match its key, has expired,
    is not valid yet or covers none of the app's hostnames is refused with the reason.
    """
    body = {"certificate_chain": _read(crt, "certificate"), "private_key": _read(key, "key")}
    with (
        connect() as client,
        output.action(f"Adding SSL certificate to {output.hexagon(app)}"),
    ):
        added: Json = client.post(f"/apps/{segment(app)}/sni-endpoints", body)
    if as_json:
        output.json(added)
        return
    output.message("Certificate details:")
    _show(added)


@click.command("certs:update")
@click.argument("crt", metavar="CRT")
@click.argument("key", metavar="KEY")
@click.option("--name", metavar="NAME", help="Which certificate (when the app has several).")
@app_options
@json_option
def certs_update(app: str, crt: str, key: str, name: str | None, as_json: bool) -> None:
    """Replace an SSL certificate and key (a renewal) without a moment of downtime."""
    body = {"certificate_chain": _read(crt, "certificate"), "private_key": _read(key, "key")}
    with connect() as client:
        current = _pick(client, app, name)
        with output.action(f"Updating SSL certificate {current['name']} for {output.hexagon(app)}"):
            updated: Json = client.patch(
                f"/apps/{segment(app)}/sni-endpoints/{segment(str(current['name']))}", body
            )
    if as_json:
        output.json(updated)
        return
    output.message("Updated certificate details:")
    _show(updated)


@click.command("certs:remove")
@click.option("--name", metavar="NAME", help="Which certificate (when the app has several).")
@click.option("--confirm", metavar="APP", help="The app's name again, to confirm.")
@app_options
def certs_remove(app: str, name: str | None, confirm: str | None) -> None:
    """Remove an SSL certificate: its hostnames get the platform's default certificate.

    Asks you to type the app's name, or takes it from --confirm APP (needed when not run
    from a terminal).
    """
    if confirm is None and sys.stdin.isatty():
        output.warn(
            f"This will remove an SSL certificate from {output.hexagon(app)}.\n"
            f"     To proceed, type {app} or re-run this command with --confirm {app}"
        )
        confirm = click.prompt("", prompt_suffix="> ", err=True, default="", show_default=False)
    if confirm != app:
        if confirm is None:
            raise ClientError(f"re-run with --confirm {app} to remove the certificate")
        raise ClientError(f"Confirmation {confirm!r} did not match {app}. Aborted.")
    with connect() as client:
        current = _pick(client, app, name)
        label = f"Removing SSL certificate {current['name']} from {output.hexagon(app)}"
        with output.action(label):
            client.delete(f"/apps/{segment(app)}/sni-endpoints/{segment(str(current['name']))}")


@click.command("certs:info")
@click.option("--name", metavar="NAME", help="Which certificate (when the app has several).")
@app_options
@json_option
def certs_info(app: str, name: str | None, as_json: bool) -> None:
    """Show an SSL certificate: its hostnames, issuer, subject and validity."""
    with connect() as client:
        current = _pick(client, app, name)
    if as_json:
        output.json(current)
        return
    output.message("Certificate details:")
    _show(current)


@click.command("certs:ca")
@click.argument("path", metavar="[PATH]", required=False)
def certs_ca(path: str | None) -> None:
    """Write the platform's local CA certificate to PATH (or print it).

    The server makes this CA on first start and signs the default certificate of
    <app>.<DOCKYARD_DOMAIN> with it. Trust it to reach apps over HTTPS:

    \b
      dockyard certs:ca dockyard-ca.pem
      curl --cacert dockyard-ca.pem https://my-app.localhost:8443/
      sudo cp dockyard-ca.pem /usr/local/share/ca-certificates/dockyard.crt
      sudo update-ca-certificates
    """
    with connect() as client:
        pem = client.request("GET", "/tls/ca").text
    if path is None:
        click.echo(pem, nl=False)
        return
    try:
        Path(path).write_text(pem)
    except OSError as exc:
        raise ClientError(f"cannot write {path}: {exc}") from exc
    output.message(f"Wrote the local CA certificate to {path}")


@click.command("https-only")
@app_options
def https_only_show(app: str) -> None:
    """Show whether an app's HTTP requests are redirected to HTTPS: on or off."""
    with connect() as client:
        found = client.get(f"/apps/{segment(app)}")
    output.line("on" if found.get("https_only") else "off")


@click.command("https-only:on")
@app_options
def https_only_on(app: str) -> None:
    """Redirect an app's HTTP requests to HTTPS (301), except ACME challenges."""
    with connect() as client, output.action(f"Enabling HTTPS-only for {output.hexagon(app)}"):
        client.patch(f"/apps/{segment(app)}", {"https_only": True})


@click.command("https-only:off")
@app_options
def https_only_off(app: str) -> None:
    """Serve an app's HTTP requests again instead of redirecting them to HTTPS."""
    with connect() as client, output.action(f"Disabling HTTPS-only for {output.hexagon(app)}"):
        client.patch(f"/apps/{segment(app)}", {"https_only": False})


COMMANDS = (
    certs_list,
    certs_add,
    certs_update,
    certs_remove,
    certs_info,
    certs_ca,
    https_only_show,
    https_only_on,
    https_only_off,
)
