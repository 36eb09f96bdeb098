"""The JSON shapes of API resources, as Heroku's Platform API v3 draws them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dockyard import apps
from dockyard.settings import Settings
from dockyard.store import App, Collaborator, Release, SSHKey, Token, User
from dockyard.store.models import Resource

Json = dict[str, Any]


def timestamp(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def times(resource: Resource) -> Json:
    return {
        "created_at": timestamp(resource.created_at),
        "updated_at": timestamp(resource.updated_at),
    }


def account(user: User) -> Json:
    return {
        "id": str(user.id),
        "email": user.email,
        "name": None,
        "admin": user.admin,
        "allow_tracking": False,
        "beta": False,
        "verified": True,
        "federated": False,
        "two_factor_authentication": False,
        "default_organization": None,
        "default_team": None,
        "last_login": None,
        "suspended_at": None,
        "delinquent_at": None,
        "sms_number": None,
        **times(user),
    }


def user_ref(user: User | None) -> Json | None:
    return {"id": str(user.id), "email": user.email} if user else None


def app(settings: Settings, api_url: str, value: App) -> Json:
    stack = {"id": value.stack, "name": value.stack}
    return {
        "id": str(value.id),
        "name": value.name,
        "stack": stack,
        "build_stack": stack,
        "owner": user_ref(value.owner),
        "region": {"id": value.region, "name": value.region},
        "maintenance": value.maintenance,
        "deploy_branch": value.deploy_branch,
        "git_url": f"{api_url.rstrip('/')}/{value.name}.git",
        "web_url": apps.web_url(settings, value.name),
        "released_at": timestamp(value.released_at),
        "archived_at": None,
        "acm": value.acm,
        "https_only": value.https_only,
        "router_timeout": value.router_timeout,
        "router_idle_timeout": value.router_idle_timeout,
        "create_status": "complete",
        "buildpack_provided_description": None,
        "internal_routing": None,
        "organization": None,
        "team": None,
        "space": None,
        "repo_size": None,
        "slug_size": None,
        **times(value),
    }


def app_ref(value: App) -> Json:
    return {"id": str(value.id), "name": value.name}


def release(app_value: App, value: Release, output_stream_url: str | None = None) -> Json:
    return {
        "id": str(value.id),
        "version": value.version,
        "description": value.description,
        "status": value.status,
        "current": value.current,
        "slug": {"id": str(value.slug_id)} if value.slug_id else None,
        "user": user_ref(value.user),
        "app": app_ref(app_value),
        "addon_plan_names": [],
        "artifacts": [],
        "eligible_for_rollback": True,
        "output_stream_url": output_stream_url,
        **times(value),
    }


def collaborator(value: Collaborator) -> Json:
    return {
        "id": str(value.id),
        "app": app_ref(value.app),
        "user": {**(user_ref(value.user) or {}), "federated": False},
        "role": "collaborator",
        "permissions": [],
        **times(value),
    }


def key(value: SSHKey) -> Json:
    return {
        "id": str(value.id),
        "comment": value.comment,
        "email": value.user.email,
        "fingerprint": value.fingerprint,
        "public_key": value.public_key,
        **times(value),
    }


def authorization(value: Token, raw: str | None = None) -> Json:
    """An API token; ``raw`` is given only when it was just made (it is never stored)."""
    return {
        "id": str(value.id),
        "description": value.description,
        "scope": ["global"],
        "access_token": {"id": str(value.id), "token": raw, "expires_in": None},
        "refresh_token": None,
        "grant": None,
        "session": None,
        "client": None,
        "user": {**(user_ref(value.user) or {}), "full_name": None},
        **times(value),
    }
