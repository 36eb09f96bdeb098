"""Dockyard's errors: one tree, each with an HTTP status and a stable API ``id``.

    DockyardError
    ├── BadRequest            400 bad_request
    ├── Unauthorized          401 unauthorized
    ├── Forbidden             403 forbidden
    ├── NotFound              404 not_found
    ├── NotAcceptable         406 not_acceptable
    ├── Conflict              409 conflict
    ├── PayloadTooLarge       413 payload_too_large
    ├── InvalidParams         422 invalid_params
    ├── AddonFailed           503 addon_failed: an add-on's server failed or refused
    ├── SettingsError         the server's configuration is invalid (not an API error)
    └── StoreError            500 store_error: the state store failed or is unreachable

Foreign errors (SQLAlchemy, pydantic, HTTP clients) are caught where they enter and
re-raised as one of these ``from`` the original.
"""

from __future__ import annotations


class DockyardError(Exception):
    """Base of every error Dockyard raises on purpose."""

    status: int = 500
    id: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "message": self.message}


class BadRequest(DockyardError):
    status = 400
    id = "bad_request"


class Unauthorized(DockyardError):
    status = 401
    id = "unauthorized"


class Forbidden(DockyardError):
    status = 403
    id = "forbidden"


class NotFound(DockyardError):
    status = 404
    id = "not_found"


class NotAcceptable(DockyardError):
    status = 406
    id = "not_acceptable"


class Conflict(DockyardError):
    status = 409
    id = "conflict"


class PayloadTooLarge(DockyardError):
    status = 413
    id = "payload_too_large"


class InvalidParams(DockyardError):
    status = 422
    id = "invalid_params"


class AddonFailed(DockyardError):
    """An add-on provider's server is down or refused to provision, rotate or deprovision."""

    status = 503
    id = "addon_failed"


class SettingsError(DockyardError):
    """A ``DOCKYARD_*`` variable has a bad value; the message lists each one."""

    id = "settings_error"


class StoreError(DockyardError):
    status = 500
    id = "store_error"
