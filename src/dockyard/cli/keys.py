"""``keys``, ``keys:add``, ``keys:remove``: the SSH keys that may ``git push`` over SSH."""

from __future__ import annotations

from pathlib import Path

import click

from dockyard.cli import output
from dockyard.cli.client import Client, Json, connect, segment
from dockyard.cli.errors import ClientError
from dockyard.cli.options import json_option

DEFAULT_KEYS = ("id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub")


def _short(public_key: str) -> str:
    """``ssh-ed25519 AAAAC3Nz...Xy12``, as the Heroku CLI shows keys."""
    kind, _, body = public_key.partition(" ")
    body = body.split(" ", 1)[0]
    return f"{kind} {body[:10]}...{body[-10:]}" if len(body) > 23 else public_key


def _default_key() -> Path:
    ssh = Path.home() / ".ssh"
    for name in DEFAULT_KEYS:
        if (ssh / name).is_file():
            return ssh / name
    raise ClientError(
        f"no public key found in {ssh} (looked for {', '.join(DEFAULT_KEYS)}): "
        "make one with `ssh-keygen -t ed25519`, or give the .pub FILE to add"
    )


def _find(client: Client, identity: str) -> Json:
    """The caller's key whose id, fingerprint, comment or public key is ``identity``."""
    keys = client.listing("/account/keys")
    fingerprint = identity if identity.startswith("SHA256:") else f"SHA256:{identity}"
    matches = [
        key
        for key in keys
        if identity in (key.get("id"), key.get("comment"), key.get("public_key"))
        or key.get("fingerprint") == fingerprint
    ]
    if not matches:
        raise ClientError(f"no key {identity} on your account; `dockyard keys` lists them")
    if len(matches) > 1:
        raise ClientError(
            f"{len(matches)} keys match {identity}; give the id or fingerprint "
            "(`dockyard keys` lists them)"
        )
    return matches[0]


@click.command("keys")
@json_option
def keys_list(as_json: bool) -> None:
    """List the SSH keys on your account."""
    with connect() as client:
        keys = client.listing("/account/keys")
        if as_json:
            output.json(keys)
            return
        email = client.get("/account").get("email", "")
    if not keys:
        output.message("You have no SSH keys; add one with `dockyard keys:add`.")
        return
    output.header(f"{email} Keys")
    output.table(
        [
            [_short(str(k.get("public_key", ""))), str(k.get("comment", "")), str(k["fingerprint"])]
            for k in keys
        ]
    )


@click.command("keys:add")
@click.argument(
    "file",
    required=False,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
def keys_add(file: Path | None) -> None:
    """Add an SSH public key to your account, for `git push` over SSH.

    FILE defaults to the first of ~/.ssh/id_ed25519.pub, id_ecdsa.pub and id_rsa.pub.
    """
    path = file or _default_key()
    try:
        public_key = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read the public key {path}: {exc}") from exc
    with connect() as client, output.action(f"Uploading {path} SSH key"):
        client.post("/account/keys", {"public_key": public_key})


@click.command("keys:remove")
@click.argument("key")
def keys_remove(key: str) -> None:
    """Remove an SSH key from your account, by its id, fingerprint or comment."""
    with connect() as client:
        found = _find(client, key)
        with output.action(f"Removing {key} SSH key"):
            client.delete(f"/account/keys/{segment(str(found['id']))}")


COMMANDS = (keys_list, keys_add, keys_remove)
