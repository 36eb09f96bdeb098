"""``/account``, authentication, ``/account/keys`` and ``/oauth/authorizations``."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.checks import dump, error, ok, unchanged
from conftest import ACCEPT, Api
from dockyard.accounts import hash_token


def bearer(api: Api, token: str) -> TestClient:
    return TestClient(api.app, headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"})


def test_account_shows_the_caller(api: Api) -> None:
    alice = api.user("alice@example.com")
    root = api.user("root@example.com", admin=True)
    mine = ok(alice.client.get("/account"))
    assert mine["email"] == "alice@example.com"
    assert mine["admin"] is False
    assert {"id", "created_at", "updated_at"} <= set(mine)
    assert mine["created_at"].endswith("Z")
    assert ok(root.client.get("/account"))["admin"] is True


def test_no_credentials_is_401_saying_how_to_send_them(api: Api) -> None:
    reply = api.anonymous.get("/account")
    error(reply, 401, "unauthorized", "Authorization: Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Token abc", "Basic !!!not-base64!!!", "Basic " + "dXNlcg=="],
)
def test_malformed_credentials_are_401(api: Api, header: str) -> None:
    api.user("alice@example.com")
    reply = api.anonymous.get("/account", headers={"Authorization": header})
    error(reply, 401, "unauthorized", "Bearer")


def test_wrong_token_is_401_and_suggests_logging_in(api: Api) -> None:
    alice = api.user("alice@example.com")
    reply = bearer(api, alice.token + "x").get("/account")
    error(reply, 401, "unauthorized", "dockyard login")


def test_basic_auth_takes_the_token_as_password(api: Api) -> None:
    alice = api.user("alice@example.com")
    for user in ("alice@example.com", "", "anything"):
        credentials = base64.b64encode(f"{user}:{alice.token}".encode()).decode()
        reply = api.anonymous.get("/account", headers={"Authorization": f"Basic {credentials}"})
        assert ok(reply)["email"] == "alice@example.com"
    wrong = base64.b64encode(b"alice@example.com:dky_wrong").decode()
    error(
        api.anonymous.get("/account", headers={"Authorization": f"Basic {wrong}"}),
        401,
        "unauthorized",
    )


def test_every_endpoint_but_health_and_schema_needs_a_token(api: Api) -> None:
    owner = api.user("owner@example.com")
    ok(owner.client.post("/apps", json={"name": "guarded"}), 201)
    for method, path in [
        ("GET", "/apps"),
        ("GET", "/users/~/apps"),
        ("POST", "/apps"),
        ("GET", "/apps/guarded"),
        ("PATCH", "/apps/guarded"),
        ("DELETE", "/apps/guarded"),
        ("GET", "/apps/guarded/config-vars"),
        ("PATCH", "/apps/guarded/config-vars"),
        ("GET", "/apps/guarded/releases"),
        ("POST", "/apps/guarded/releases"),
        ("GET", "/apps/guarded/releases/1"),
        ("GET", "/apps/guarded/releases/1/config-vars"),
        ("GET", "/apps/guarded/collaborators"),
        ("POST", "/apps/guarded/collaborators"),
        ("DELETE", "/apps/guarded/collaborators/owner@example.com"),
        ("GET", "/account/keys"),
        ("POST", "/account/keys"),
        ("DELETE", "/account/keys/x"),
        ("GET", "/oauth/authorizations"),
        ("POST", "/oauth/authorizations"),
        ("DELETE", "/oauth/authorizations/x"),
    ]:
        with unchanged(api.database):
            reply = api.anonymous.request(method, path, json={"A": "1"})
        error(reply, 401, "unauthorized")


# --- SSH keys -------------------------------------------------------------------------------


def ssh_keygen(directory: Path, comment: str) -> tuple[str, str]:
    """A fresh ed25519 public key line and its SHA256 fingerprint, as ssh-keygen prints it."""
    path = directory / comment.replace("@", "_")
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(f"{path}.pub").read_text().strip(), listed.stdout.split()[1]


def test_keys_add_list_get_delete(api: Api, tmp_path: Path) -> None:
    alice = api.user("alice@example.com")
    line, fingerprint = ssh_keygen(tmp_path, "alice@laptop")
    assert ok(alice.client.get("/account/keys")) == []

    added = ok(alice.client.post("/account/keys", json={"public_key": line + "\n"}), 201)
    assert added["fingerprint"] == fingerprint
    assert added["comment"] == "alice@laptop"
    assert added["email"] == "alice@example.com"
    assert added["public_key"] == line.rsplit(" ", 1)[0]

    assert [k["id"] for k in ok(alice.client.get("/account/keys"))] == [added["id"]]
    assert ok(alice.client.get(f"/account/keys/{added['id']}"))["fingerprint"] == fingerprint
    assert ok(alice.client.delete(f"/account/keys/{added['id']}"))["id"] == added["id"]
    assert ok(alice.client.get("/account/keys")) == []
    error(alice.client.delete(f"/account/keys/{added['id']}"), 404, "not_found", "dockyard keys")


def test_keys_can_be_found_and_removed_by_fingerprint(api: Api, tmp_path: Path) -> None:
    alice = api.user("alice@example.com")
    # Fingerprints are base64 and often hold a "/"; make sure this one does.
    for attempt in range(50):
        line, fingerprint = ssh_keygen(tmp_path, f"alice@host{attempt}")
        if "/" in fingerprint:
            break
    assert "/" in fingerprint
    added = ok(alice.client.post("/account/keys", json={"public_key": line}), 201)
    assert ok(alice.client.get(f"/account/keys/{fingerprint}"))["id"] == added["id"]
    assert ok(alice.client.delete(f"/account/keys/{fingerprint}"))["id"] == added["id"]
    assert ok(alice.client.get("/account/keys")) == []


def test_keys_can_be_removed_by_comment(api: Api, tmp_path: Path) -> None:
    alice = api.user("alice@example.com")
    line, _ = ssh_keygen(tmp_path, "alice@desktop")
    ok(alice.client.post("/account/keys", json={"public_key": line}), 201)
    ok(alice.client.delete("/account/keys/alice@desktop"))
    assert ok(alice.client.get("/account/keys")) == []


@pytest.mark.parametrize(
    ("public_key", "says"),
    [
        ("not a key at all", "OpenSSH public key"),
        ("", "OpenSSH public key"),
        ("ssh-ed25519", "OpenSSH public key"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "OpenSSH public key"),
        ("ssh-ed25519 !!!notbase64!!! me@host", "base64"),
        ("ssh-ed25519 AAAA me@host", "not valid"),
    ],
)
def test_garbage_keys_are_422(api: Api, public_key: str, says: str) -> None:
    alice = api.user("alice@example.com")
    with unchanged(api.database):
        reply = alice.client.post("/account/keys", json={"public_key": public_key})
    error(reply, 422, "invalid_params", says)


def test_a_key_labelled_with_the_wrong_type_is_422(api: Api, tmp_path: Path) -> None:
    alice = api.user("alice@example.com")
    line, _ = ssh_keygen(tmp_path, "alice@laptop")
    with unchanged(api.database):
        reply = alice.client.post(
            "/account/keys", json={"public_key": line.replace("ssh-ed25519", "ssh-rsa")}
        )
    error(reply, 422, "invalid_params", "says ssh-rsa but holds a ssh-ed25519 key")


def test_key_body_must_be_just_a_public_key(api: Api) -> None:
    alice = api.user("alice@example.com")
    with unchanged(api.database):
        error(alice.client.post("/account/keys", json={}), 422, "invalid_params", "public_key")
        error(
            alice.client.post("/account/keys", json={"public_key": "x", "admin": True}),
            422,
            "invalid_params",
            "unknown field 'admin'",
        )


def test_a_key_registers_once_across_all_accounts(api: Api, tmp_path: Path) -> None:
    alice = api.user("alice@example.com")
    bob = api.user("bob@example.com")
    line, fingerprint = ssh_keygen(tmp_path, "shared@host")
    ok(alice.client.post("/account/keys", json={"public_key": line}), 201)
    with unchanged(api.database):
        again = alice.client.post("/account/keys", json={"public_key": line})
        other = bob.client.post("/account/keys", json={"public_key": line.replace("shared@", "b@")})
    error(again, 409, "conflict", fingerprint, "already registered")
    error(other, 409, "conflict", fingerprint)


def test_keys_are_private_to_their_owner(api: Api, tmp_path: Path) -> None:
    alice = api.user("alice@example.com")
    bob = api.user("bob@example.com")
    line, _ = ssh_keygen(tmp_path, "alice@laptop")
    key = ok(alice.client.post("/account/keys", json={"public_key": line}), 201)
    assert ok(bob.client.get("/account/keys")) == []
    with unchanged(api.database):
        error(bob.client.get(f"/account/keys/{key['id']}"), 404, "not_found")
        error(bob.client.delete(f"/account/keys/{key['id']}"), 404, "not_found")


# --- OAuth authorizations (API tokens) ------------------------------------------------------


def test_authorization_token_is_shown_once_and_works(api: Api) -> None:
    alice = api.user("alice@example.com")
    made = ok(alice.client.post("/oauth/authorizations", json={"description": "ci"}), 201)
    token = made["access_token"]["token"]
    assert token.startswith("dky_")
    assert made["description"] == "ci"
    assert made["scope"] == ["global"]
    assert made["user"]["email"] == "alice@example.com"

    assert ok(bearer(api, token).get("/account"))["email"] == "alice@example.com"

    listed = ok(alice.client.get("/oauth/authorizations"))
    assert made["id"] in [a["id"] for a in listed]
    assert all(a["access_token"]["token"] is None for a in listed)
    shown = ok(alice.client.get(f"/oauth/authorizations/{made['id']}"))
    assert shown["access_token"]["token"] is None
    assert shown["description"] == "ci"


def test_create_authorization_without_a_body(api: Api) -> None:
    alice = api.user("alice@example.com")
    made = ok(alice.client.post("/oauth/authorizations"), 201)
    assert made["access_token"]["token"]
    assert ok(alice.client.post("/oauth/authorizations", json={"scope": ["global"]}), 201)


def test_tokens_are_stored_only_as_hashes(api: Api) -> None:
    alice = api.user("alice@example.com")
    made = ok(alice.client.post("/oauth/authorizations", json={"description": "x"}), 201)
    everything = repr(dump(api.database))
    for token in (alice.token, made["access_token"]["token"]):
        assert token not in everything
        assert token.removeprefix("dky_") not in everything
        assert hash_token(token) in everything


def test_deleted_authorization_stops_authenticating(api: Api) -> None:
    alice = api.user("alice@example.com")
    made = ok(alice.client.post("/oauth/authorizations"), 201)
    token = made["access_token"]["token"]
    assert bearer(api, token).get("/account").status_code == 200
    assert ok(alice.client.delete(f"/oauth/authorizations/{made['id']}"))["id"] == made["id"]
    error(bearer(api, token).get("/account"), 401, "unauthorized")
    error(alice.client.get(f"/oauth/authorizations/{made['id']}"), 404, "not_found")
    # The token that made the request still works.
    assert alice.client.get("/account").status_code == 200


def test_a_token_can_revoke_itself(api: Api) -> None:
    alice = api.user("alice@example.com")
    listed = ok(alice.client.get("/oauth/authorizations"))
    assert len(listed) == 1
    ok(alice.client.delete(f"/oauth/authorizations/{listed[0]['id']}"))
    error(alice.client.get("/account"), 401, "unauthorized")


def test_authorization_failures(api: Api) -> None:
    alice = api.user("alice@example.com")
    bob = api.user("bob@example.com")
    bobs = ok(bob.client.get("/oauth/authorizations"))[0]["id"]
    with unchanged(api.database):
        error(
            alice.client.post("/oauth/authorizations", json={"scope": ["read"]}),
            422,
            "invalid_params",
            "global",
        )
        error(
            alice.client.post("/oauth/authorizations", json={"client": "x"}),
            422,
            "invalid_params",
            "unknown field 'client'",
        )
        error(
            alice.client.post("/oauth/authorizations", json={"description": "x" * 201}),
            422,
            "invalid_params",
            "description",
        )
        error(alice.client.delete(f"/oauth/authorizations/{bobs}"), 404, "not_found")
        error(alice.client.get(f"/oauth/authorizations/{bobs}"), 404, "not_found")
        error(alice.client.delete("/oauth/authorizations/not-a-uuid"), 404, "not_found")
    assert bob.client.get("/account").status_code == 200
