"""Users, their API tokens and their SSH keys.

Tokens are random, shown once when made, and kept only as their SHA-256 digest:
they carry 256 bits of entropy, so a fast hash is enough and lookups stay O(1).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import struct
import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dockyard.errors import Conflict, InvalidParams, NotFound, Unauthorized
from dockyard.store import SSHKey, Token, User

TOKEN_PREFIX = "dky_"  # noqa: S105 - a public marker that tells tokens apart, not a secret
_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    email = email.strip()
    if not _EMAIL.match(email):
        raise InvalidParams(f"{email!r} is not an email address; give one like dev@example.com")
    local, _, domain = email.partition("@")
    return f"{local}@{domain.lower()}"


def create_user(session: Session, email: str, *, admin: bool = False) -> tuple[User, str]:
    """Make a user and a first API token; return both (the token is not kept)."""
    email = normalize_email(email)
    if find_user(session, email) is not None:
        raise Conflict(f"a user with email {email} already exists")
    user = User(email=email, admin=admin)
    session.add(user)
    session.flush()
    _token, raw = create_token(session, user, "created with admin:create-user")
    return user, raw


def find_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def get_user(session: Session, email: str) -> User:
    user = find_user(session, email)
    if user is None:
        raise NotFound(
            f"no user has the email {email}; "
            "an operator can add one with `dockyard admin:create-user EMAIL`"
        )
    return user


def create_token(session: Session, user: User, description: str = "") -> tuple[Token, str]:
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = Token(user=user, user_id=user.id, token_hash=hash_token(raw), description=description)
    session.add(token)
    session.flush()
    return token, raw


def authenticate(session: Session, raw: str) -> User:
    token = session.scalar(select(Token).where(Token.token_hash == hash_token(raw)))
    if token is None:
        raise Unauthorized(
            "invalid credentials: the API token is wrong or was revoked; "
            "log in again with `dockyard login`"
        )
    return token.user


def list_tokens(session: Session, user: User) -> list[Token]:
    return list(session.scalars(select(Token).where(Token.user_id == user.id)))


def get_token(session: Session, user: User, token_id: str) -> Token:
    token = None
    if (parsed := parse_uuid(token_id)) is not None:
        token = session.scalar(select(Token).where(Token.id == parsed, Token.user_id == user.id))
    if token is None:
        raise NotFound(f"no authorization {token_id}; `dockyard authorizations` lists them")
    return token


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def parse_public_key(text: str) -> tuple[str, str, str]:
    """Check an OpenSSH public key line; return (normalized key, fingerprint, comment)."""
    parts = text.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in _KEY_TYPES:
        raise InvalidParams(
            "public_key must be an OpenSSH public key line such as "
            "'ssh-ed25519 AAAAC3Nza... you@laptop' (the contents of ~/.ssh/id_ed25519.pub)"
        )
    kind, body = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) == 3 else ""
    try:
        blob = base64.b64decode(body, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        embedded = blob[4 : 4 + length].decode()
    except (binascii.Error, struct.error, UnicodeDecodeError) as exc:
        raise InvalidParams("public_key is not valid: its base64 part does not decode") from exc
    if embedded != kind:
        raise InvalidParams(f"public_key says {kind} but holds a {embedded or 'malformed'} key")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"{kind} {body}", f"SHA256:{digest}", comment[:200]


def add_key(session: Session, user: User, public_key: str) -> SSHKey:
    key_text, fingerprint, comment = parse_public_key(public_key)
    if session.scalar(select(SSHKey).where(SSHKey.fingerprint == fingerprint)) is not None:
        raise Conflict(f"the key {fingerprint} is already registered to an account")
    key = SSHKey(
        user=user, user_id=user.id, public_key=key_text, fingerprint=fingerprint, comment=comment
    )
    session.add(key)
    session.flush()
    return key


def list_keys(session: Session, user: User) -> list[SSHKey]:
    return list(session.scalars(select(SSHKey).where(SSHKey.user_id == user.id)))


def get_key(session: Session, user: User, identity: str) -> SSHKey:
    """Find one of the user's keys by id, fingerprint or comment."""
    for key in list_keys(session, user):
        if identity in (str(key.id), key.fingerprint, key.comment):
            return key
    raise NotFound(f"no key {identity} on your account; `dockyard keys` lists them")
