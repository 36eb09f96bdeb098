"""``/account``, ``/account/keys`` and ``/oauth/authorizations``: the caller's own things."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from dockyard import accounts
from dockyard.api import shapes
from dockyard.api.context import Authenticated
from dockyard.api.paging import paginate
from dockyard.api.shapes import Json
from dockyard.errors import InvalidParams

router = APIRouter()


class KeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public_key: str = Field(max_length=16_384, description="An OpenSSH public key line")


class AuthorizationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(default="", max_length=200)
    scope: list[str] | None = Field(default=None, description="Only 'global' is supported")
    expires_in: int | None = Field(default=None, description="Ignored: tokens last until revoked")


@router.get("/account", summary="The caller's account")
def get_account(caller: Authenticated) -> Json:
    with caller.transaction() as (_session, user):
        return shapes.account(user)


@router.get("/account/keys", summary="List the caller's SSH keys")
def list_keys(caller: Authenticated, request: Request, response: Response) -> list[Json]:
    with caller.transaction() as (session, user):
        keys = accounts.list_keys(session, user)
        page = paginate(
            request, response, keys, {"id": lambda k: k.id, "fingerprint": lambda k: k.fingerprint}
        )
        return [shapes.key(k) for k in page]


@router.post("/account/keys", status_code=201, summary="Add an SSH key")
def add_key(caller: Authenticated, body: KeyBody) -> Json:
    with caller.transaction() as (session, user):
        return shapes.key(accounts.add_key(session, user, body.public_key))


@router.get("/account/keys/{key:path}", summary="One SSH key by id or fingerprint")
def get_key(caller: Authenticated, key: str) -> Json:
    with caller.transaction() as (session, user):
        return shapes.key(accounts.get_key(session, user, key))


@router.delete("/account/keys/{key:path}", summary="Remove an SSH key")
def delete_key(caller: Authenticated, key: str) -> Json:
    with caller.transaction() as (session, user):
        found = accounts.get_key(session, user, key)
        shown = shapes.key(found)
        session.delete(found)
        return shown


@router.get("/oauth/authorizations", summary="List the caller's API tokens (without the tokens)")
def list_authorizations(caller: Authenticated, request: Request, response: Response) -> list[Json]:
    with caller.transaction() as (session, user):
        tokens = accounts.list_tokens(session, user)
        page = paginate(request, response, tokens, {"id": lambda t: t.id})
        return [shapes.authorization(t) for t in page]


@router.post("/oauth/authorizations", status_code=201, summary="Make an API token; shown only now")
def create_authorization(caller: Authenticated, body: AuthorizationBody | None = None) -> Json:
    body = body or AuthorizationBody()
    if body.scope not in (None, ["global"]):
        raise InvalidParams("only the 'global' scope is supported; omit scope or send [\"global\"]")
    with caller.transaction() as (session, user):
        token, raw = accounts.create_token(session, user, body.description)
        return shapes.authorization(token, raw)


@router.get("/oauth/authorizations/{authorization}", summary="One API token (without the token)")
def get_authorization(caller: Authenticated, authorization: str) -> Json:
    with caller.transaction() as (session, user):
        return shapes.authorization(accounts.get_token(session, user, authorization))


@router.delete("/oauth/authorizations/{authorization}", summary="Revoke an API token")
def delete_authorization(caller: Authenticated, authorization: str) -> Json:
    with caller.transaction() as (session, user):
        token = accounts.get_token(session, user, authorization)
        shown = shapes.authorization(token)
        session.delete(token)
        return shown
