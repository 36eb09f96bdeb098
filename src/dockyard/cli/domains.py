"""``domains``, ``domains:add``, ``domains:update``, ``domains:remove``: the hostnames an app
is served at, and which uploaded certificate serves each."""

from __future__ import annotations

import click

from dockyard.cli import output
from dockyard.cli.client import Json, connect, segment
from dockyard.cli.options import app_options, json_option


def record_type(hostname: str) -> str:
    """The DNS record to make: a CNAME, or ALIAS/ANAME at a zone's apex (example.com)."""
    return "ALIAS or ANAME" if hostname.count(".") == 1 else "CNAME"


@click.command("domains")
@app_options
@json_option
def domains_list(app: str, as_json: bool) -> None:
    """List an app's domains: its default hostname, then its custom domains.

    \b
    Example:
      $ dockyard domains -a my-app
      === my-app Default Domain
      my-app.example.com

    \b
      === my-app Custom Domains
      Domain Name      DNS Record Type  DNS Target          SNI Endpoint
      www.example.org  CNAME            my-app.example.com  sloop-41357

    The SNI Endpoint column shows once a domain is associated with an uploaded certificate
    (`domains:update --cert`).
    """
    with connect() as client:
        found = client.listing(f"/apps/{segment(app)}/domains")
    if as_json:
        output.json(found)
        return
    default = [d for d in found if d.get("kind") == "default"]
    custom = [d for d in found if d.get("kind") != "default"]
    output.header(f"{app} Default Domain")
    for domain in default:
        output.line(str(domain["hostname"]))
    if not custom:
        return
    output.line()
    output.header(f"{app} Custom Domains")
    # The ACM column once automated certificates are on (certs:auto:enable); the SNI
    # Endpoint column once a domain is associated with an uploaded certificate.
    acm = any(d.get("acm_status") for d in custom)
    sni = any(d.get("sni_endpoint") for d in custom)
    output.table(
        [_row(d, acm, sni) for d in sorted(custom, key=lambda d: str(d["hostname"]))],
        [
            "Domain Name",
            "DNS Record Type",
            "DNS Target",
            *(["ACM Status"] if acm else []),
            *(["SNI Endpoint"] if sni else []),
        ],
    )


def _row(domain: Json, acm: bool, sni: bool) -> list[str]:
    hostname = str(domain["hostname"])
    row = [hostname, record_type(hostname), str(domain.get("cname") or "")]
    if acm:
        row.append(str(domain.get("acm_status") or ""))
    if sni:
        endpoint = domain.get("sni_endpoint")
        row.append(str(endpoint["name"]) if isinstance(endpoint, dict) else "")
    return row


_CERT_HELP = "An uploaded certificate of the app (its name, as `certs` lists) to serve it with."


@click.command("domains:add")
@click.argument("hostname")
@click.option("--cert", metavar="NAME", help=_CERT_HELP)
@app_options
@json_option
def domains_add(app: str, hostname: str, cert: str | None, as_json: bool) -> None:
    """Serve an app at HOSTNAME too (www.example.org, or *.example.org for every subdomain).

    The router sends the app its requests at once; point the hostname's DNS at the app's
    default hostname (the DNS target this prints) for them to arrive. A hostname belongs to
    one app; a more specific one wins over a wildcard. With --cert, HTTPS serves it with
    that uploaded certificate, which must cover it.
    """
    body: Json = {"hostname": hostname, **({"sni_endpoint": cert} if cert else {})}
    with connect() as client, output.action(f"Adding {hostname} to {output.hexagon(app)}"):
        added: Json = client.post(f"/apps/{segment(app)}/domains", body)
    if as_json:
        output.json(added)
        return
    output.message(
        f"Configure your app's DNS provider to point to the DNS Target {added.get('cname')} "
        f"({record_type(str(added['hostname']))} record)."
    )


@click.command("domains:update")
@click.argument("hostname")
@click.option("--cert", metavar="NAME", help=_CERT_HELP)
@click.option("--no-cert", is_flag=True, help="Undo the association: serve the best match.")
@app_options
@json_option
def domains_update(app: str, hostname: str, cert: str | None, no_cert: bool, as_json: bool) -> None:
    """Serve the custom domain HOSTNAME with an uploaded certificate (--cert NAME) before any
    other that covers it, or undo that (--no-cert).

    Without an association, a hostname gets the most specific certificate that covers it
    (see `certs`). The certificate must be one of the app's uploaded ones and cover the
    hostname, else this is refused with the reason.

    \b
    Example:
      $ dockyard domains:update www.example.org --cert sloop-41357 -a my-app
    """
    if (cert is None) == (not no_cert):
        raise click.UsageError("give --cert NAME, or --no-cert to undo the association")
    what = f"to use {cert} certificate" if cert else "to use no particular certificate"
    with connect() as client, output.action(f"Updating {hostname} {what}"):
        updated: Json = client.patch(
            f"/apps/{segment(app)}/domains/{segment(hostname)}", {"sni_endpoint": cert}
        )
    if as_json:
        output.json(updated)


@click.command("domains:remove")
@click.argument("hostname")
@app_options
def domains_remove(app: str, hostname: str) -> None:
    """Stop serving an app at HOSTNAME (one of its custom domains)."""
    with connect() as client, output.action(f"Removing {hostname} from {output.hexagon(app)}"):
        client.delete(f"/apps/{segment(app)}/domains/{segment(hostname)}")


COMMANDS = (domains_list, domains_add, domains_update, domains_remove)
