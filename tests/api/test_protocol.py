"""What every request and response shares: ids, versions, sizes, errors, health, schema."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute

from api.checks import error, ok, unchanged
from conftest import ACCEPT, Api
from dockyard.api import MAX_BODY


def test_healthz_needs_no_token(api: Api) -> None:
    reply = TestClient(api.app).get("/healthz")
    assert reply.status_code == 200
    assert reply.json()["status"] == "ok"
    assert reply.headers["request-id"]


def test_unknown_endpoint_is_a_json_404(api: Api) -> None:
    alice = api.user("alice@example.com")
    for client in (alice.client, api.anonymous):
        error(
            client.get("/no/such/thing"), 404, "not_found", "no such endpoint", "GET /no/such/thing"
        )


def test_wrong_method_is_a_json_405(api: Api) -> None:
    alice = api.user("alice@example.com")
    error(alice.client.put("/apps"), 405, "method_not_allowed", "PUT is not allowed on /apps")


def test_every_response_carries_a_request_id(api: Api) -> None:
    alice = api.user("alice@example.com")
    replies = [
        alice.client.get("/account"),  # 200
        alice.client.post("/apps", json={"name": "tagged"}),  # 201
        alice.client.get("/apps/tagged/releases", headers={"Range": "version ..; max=0"}),  # 400
        api.anonymous.get("/account"),  # 401
        alice.client.get("/nowhere"),  # 404
        alice.client.delete("/healthz"),  # 405
        alice.client.get("/account", headers={"Accept": "application/vnd.heroku+json; version=2"}),
        alice.client.post("/apps", content=b"x" * (MAX_BODY + 1)),  # 413
        alice.client.post("/apps", json={"name": "Bad"}),  # 422
        TestClient(api.app).get("/healthz"),
        TestClient(api.app).get("/openapi.json"),
    ]
    assert [r.status_code for r in replies] == [
        200,
        201,
        400,
        401,
        404,
        405,
        406,
        413,
        422,
        200,
        200,
    ]
    ids = [r.headers.get("request-id") for r in replies]
    for value in ids:
        assert value is not None
        uuid.UUID(value)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    "given", ["0f0c5b6e-2f6b-4d6b-9a3e-2f2b1e0c9d11", "my-request.42_abc", "A" * 200]
)
def test_a_valid_request_id_is_echoed(api: Api, given: str) -> None:
    alice = api.user("alice@example.com")
    for reply in (
        alice.client.get("/account", headers={"Request-Id": given}),
        alice.client.get("/nowhere", headers={"Request-Id": given}),
        api.anonymous.get("/account", headers={"Request-Id": given}),
    ):
        assert reply.headers["request-id"] == given


@pytest.mark.parametrize(
    "given", ["short", "has space in it", "semi;colon;", "x" * 201, "a/b/c/d/e"]
)
def test_an_invalid_request_id_is_replaced(api: Api, given: str) -> None:
    alice = api.user("alice@example.com")
    reply = alice.client.get("/account", headers={"Request-Id": given})
    assert reply.status_code == 200
    assert reply.headers["request-id"] != given
    uuid.UUID(reply.headers["request-id"])
    assert len(reply.headers.get_list("request-id")) == 1


@pytest.mark.parametrize(
    "accept",
    [
        "application/vnd.heroku+json; version=2",
        "application/vnd.heroku+json; version=4",
        "application/vnd.heroku+json; version=4.sdk",
    ],
)
def test_other_api_versions_are_406(api: Api, accept: str) -> None:
    alice = api.user("alice@example.com")
    with unchanged(api.database):
        reply = alice.client.post("/apps", json={"name": "nope"}, headers={"Accept": accept})
    error(reply, 406, "not_acceptable", "version=3")


@pytest.mark.parametrize(
    "accept",
    [
        ACCEPT,
        "application/vnd.heroku+json;version=3",
        # The Heroku CLI asks for variants of version 3.
        "application/vnd.heroku+json; version=3.sdk",
        "application/json",
        "*/*",
        "",
    ],
)
def test_version_3_or_no_version_is_served(api: Api, accept: str) -> None:
    alice = api.user("alice@example.com")
    assert alice.client.get("/account", headers={"Accept": accept}).status_code == 200


# --- body size and shape -------------------------------------------------------------------------


def test_a_body_over_1_mb_with_content_length_is_413(api: Api) -> None:
    alice = api.user("alice@example.com")
    ok(alice.client.post("/apps", json={"name": "big"}), 201)
    body = json.dumps({"A": "x" * MAX_BODY}).encode()
    with unchanged(api.database):
        reply = alice.client.patch(
            "/apps/big/config-vars", content=body, headers={"Content-Type": "application/json"}
        )
    error(reply, 413, "payload_too_large", "1 MB")


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    yield b'{"A": "'
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size
    yield b'"}'


def test_a_chunked_body_over_1_mb_is_413(api: Api) -> None:
    alice = api.user("alice@example.com")
    ok(alice.client.post("/apps", json={"name": "big"}), 201)
    with unchanged(api.database):
        reply = alice.client.patch(
            "/apps/big/config-vars",
            content=chunks(MAX_BODY + 1),
            headers={"Content-Type": "application/json"},
        )
    assert "content-length" not in reply.request.headers
    assert reply.request.headers["transfer-encoding"] == "chunked"
    error(reply, 413, "payload_too_large", "1 MB")


def test_a_chunked_body_under_1_mb_is_read(api: Api) -> None:
    alice = api.user("alice@example.com")
    ok(alice.client.post("/apps", json={"name": "small"}), 201)
    reply = alice.client.patch(
        "/apps/small/config-vars",
        content=chunks(10_000, size=1000),
        headers={"Content-Type": "application/json"},
    )
    assert reply.request.headers["transfer-encoding"] == "chunked"
    assert ok(reply) == {"A": "x" * 10_000}


def test_a_body_just_under_1_mb_reaches_the_config_limit_check(api: Api) -> None:
    alice = api.user("alice@example.com")
    ok(alice.client.post("/apps", json={"name": "big"}), 201)
    body = json.dumps({"A": "x" * (MAX_BODY - 100)}).encode()
    assert len(body) <= MAX_BODY
    with unchanged(api.database):
        reply = alice.client.patch(
            "/apps/big/config-vars", content=body, headers={"Content-Type": "application/json"}
        )
    error(reply, 422, "invalid_params", "32 kB")


@pytest.mark.parametrize(
    "body", [b"{", b"not json", b'{"name": }', b"\xff\xfe", b'{"name": "a"} trailing']
)
def test_malformed_json_is_400_everywhere(api: Api, body: bytes) -> None:
    alice = api.user("alice@example.com")
    ok(alice.client.post("/apps", json={"name": "target"}), 201)
    for method, path in [
        ("POST", "/apps"),
        ("PATCH", "/apps/target"),
        ("PATCH", "/apps/target/config-vars"),
        ("POST", "/apps/target/releases"),
        ("POST", "/apps/target/collaborators"),
        ("POST", "/account/keys"),
        ("POST", "/oauth/authorizations"),
    ]:
        with unchanged(api.database):
            reply = alice.client.request(
                method, path, content=body, headers={"Content-Type": "application/json"}
            )
        error(reply, 400, "bad_request", "not valid JSON")


# --- the schema ------------------------------------------------------------------------------


ISSUE_ENDPOINTS = {
    ("GET", "/healthz"),
    ("GET", "/account"),
    ("GET", "/users/~/apps"),
    ("GET", "/apps"),
    ("POST", "/apps"),
    ("GET", "/apps/{app}"),
    ("PATCH", "/apps/{app}"),
    ("DELETE", "/apps/{app}"),
    ("GET", "/apps/{app}/config-vars"),
    ("PATCH", "/apps/{app}/config-vars"),
    ("GET", "/apps/{app}/releases/{release}/config-vars"),
    ("GET", "/apps/{app}/releases"),
    ("POST", "/apps/{app}/releases"),
    ("GET", "/apps/{app}/releases/{release}"),
    ("GET", "/apps/{app}/collaborators"),
    ("POST", "/apps/{app}/collaborators"),
    ("DELETE", "/apps/{app}/collaborators/{collaborator}"),
    ("GET", "/account/keys"),
    ("POST", "/account/keys"),
    ("DELETE", "/account/keys/{key}"),
    ("GET", "/oauth/authorizations"),
    ("POST", "/oauth/authorizations"),
    ("DELETE", "/oauth/authorizations/{authorization}"),
}


def api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    """Every API route, also those of included routers (which FastAPI may keep nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
            continue
        nested = getattr(route, "original_router", None) or route
        yield from api_routes(getattr(nested, "routes", []))


def test_openapi_schema_lists_every_route(api: Api) -> None:
    schema = ok(TestClient(api.app).get("/openapi.json"))
    listed = {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
    }
    served = {
        (method, route.path_format)  # "{key:path}" is listed as "{key}"
        for route in api_routes(api.app.routes)
        for method in route.methods
    }
    assert listed <= served
    # Only git's smart-HTTP protocol and the platform's internal hooks may stay out of the
    # schema; every Platform API route must be in it.
    hidden = {path for _method, path in served - listed}
    assert all(".git/" in path or path.startswith("/internal/") for path in hidden), hidden
    assert listed >= ISSUE_ENDPOINTS
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)


def test_every_route_in_the_schema_is_served(api: Api) -> None:
    alice = api.user("alice@example.com")
    schema = ok(TestClient(api.app).get("/openapi.json"))
    for path, operations in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method in operations:
            reply = alice.client.request(method.upper(), concrete)
            assert reply.status_code != 405, (method, path)
            assert "no such endpoint" not in reply.text, (method, path)


def test_an_unexpected_failure_is_a_json_500_with_the_request_id(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = api.user("alice@example.com")

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("dockyard.apps.visible", broken)
    client = TestClient(
        api.app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {alice.token}"}
    )
    reply = client.get("/apps", headers={"Request-Id": "trace-me-1234"})
    message = error(reply, 500, "internal_error", "trace-me-1234")
    assert "a bug" not in message
    assert reply.headers["request-id"] == "trace-me-1234"
    # In tests the bug itself still surfaces.
    with pytest.raises(RuntimeError, match="a bug"):
        alice.client.get("/apps")
