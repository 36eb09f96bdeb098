"""``keys``, ``keys:add``, ``keys:remove`` with real keys from ``ssh-keygen``."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cli.runner import Cli


def keygen(path: Path, comment: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.with_name(path.name + ".pub")


def fingerprint(public: Path) -> str:
    done = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(public)],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()[1]


def listed(alice: Cli) -> list[dict[str, str]]:
    return list(json.loads(alice.out("keys", "--json")))


def test_add_list_remove(alice: Cli) -> None:
    default = keygen(alice.home / ".ssh" / "id_ed25519", "alice@laptop")
    other = keygen(alice.home / "keys" / "work", "alice@work")
    third = keygen(alice.home / "keys" / "ci", "alice@ci")

    result = alice.run("keys:add")
    assert f"Uploading {default} SSH key... done" in result.stderr
    alice.run("keys:add", str(other))
    with alice.api() as api:
        api.post("/account/keys", json={"public_key": third.read_text()}).raise_for_status()

    keys = {key["comment"]: key for key in listed(alice)}
    assert set(keys) == {"alice@laptop", "alice@work", "alice@ci"}
    assert keys["alice@laptop"]["fingerprint"] == fingerprint(default)
    assert keys["alice@work"]["public_key"] == " ".join(other.read_text().split()[:2])
    shown = alice.out("keys")
    assert shown.startswith(f"=== {alice.email} Keys\n")
    assert fingerprint(other) in shown
    assert "ssh-ed25519 AAAAC3NzaC..." in shown

    # By comment, by fingerprint (which holds '/' and '+'), by id.
    assert (
        "Removing alice@laptop SSH key... done" in alice.run("keys:remove", "alice@laptop").stderr
    )
    alice.run("keys:remove", fingerprint(other))
    alice.run("keys:remove", keys["alice@ci"]["id"])
    assert listed(alice) == []
    assert "You have no SSH keys" in alice.run("keys").stderr


def test_key_failures(alice: Cli) -> None:
    error = alice.fails("keys:add")
    assert "no public key found" in error
    assert "ssh-keygen -t ed25519" in error

    garbage = alice.home / "garbage.pub"
    garbage.write_text("not a key\n")
    assert "public_key must be an OpenSSH public key line" in alice.fails("keys:add", str(garbage))

    public = keygen(alice.home / "k" / "one", "one")
    alice.run("keys:add", str(public))
    assert "is already registered" in alice.fails("keys:add", str(public))
    assert "no key nothing-like-it on your account" in alice.fails("keys:remove", "nothing-like-it")
    assert "does not exist" in alice.fails("keys:add", str(alice.home / "missing.pub"))
