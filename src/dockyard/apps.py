"""Apps, who may see them, and their collaborators.

Access: an admin sees every app; a user sees the apps they own or collaborate on.
An app a user cannot see is reported as not found, never as forbidden, so that
its existence does not leak.
"""

from __future__ import annotations

import re
import secrets

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dockyard import releases
from dockyard.accounts import get_user, parse_uuid
from dockyard.errors import Conflict, Forbidden, InvalidParams, NotFound
from dockyard.settings import Settings
from dockyard.store import App, Collaborator, User

NAME = re.compile(r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$")
STACK = "dockyard-24"
REGION = "local"
MAX_ROUTER_TIMEOUT = 3600  # seconds: an app's own router timeouts go up to an hour
UID_BASE = 1_000_000  # each app's builds and dynos run as its own Unix uid, from this range
UID_RANGE = 1 << 30
_ADJECTIVES = (
    "amber", "brave", "calm", "crisp", "dusty", "eager", "fancy", "gentle", "hidden",
    "icy", "jolly", "keen", "lively", "misty", "noble", "polar", "quiet", "rapid",
    "shiny", "sunny", "tidy", "vast", "warm", "young",
)  # fmt: skip
_NOUNS = (
    "anchor", "bay", "beacon", "cove", "current", "delta", "dune", "fjord", "harbor",
    "island", "jetty", "lagoon", "mast", "pier", "reef", "sail", "shore", "tide",
    "wave", "wharf",
)  # fmt: skip


def web_url(settings: Settings, name: str) -> str:
    """Where the router serves the app ``name``: ``http://<name>.<domain>[:port]/``."""
    port = "" if settings.http_port == 80 else f":{settings.http_port}"
    return f"http://{name}.{settings.domain}{port}/"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidParams(
            f"Name {name!r} is invalid: it must start with a letter, hold only lowercase "
            "letters, digits and dashes, not end with a dash, and be 3 to 30 characters long"
        )
    return name


BRANCH = re.compile(r"^(?!.*\.\.)(?!/)(?!.*/$)(?!.*\.lock$)[A-Za-z0-9._/-]{1,200}$")


def check_branch(branch: str) -> str | None:
    """A valid branch name, or ``None`` (from ``""``) for the default: main, or master."""
    if not branch:
        return None
    if not BRANCH.match(branch) or branch.startswith("-"):
        raise InvalidParams(
            f"deploy_branch {branch!r} is not a branch name; use letters, digits, '.', '_', "
            "'-' and '/' (like production or release/v2)"
        )
    return branch


def random_name(session: Session) -> str:
    for _ in range(20):
        name = "-".join(
            (
                secrets.choice(_ADJECTIVES),
                secrets.choice(_NOUNS),
                str(secrets.randbelow(90000) + 10000),
            )
        )
        if session.scalar(select(App.id).where(App.name == name)) is None:
            return name
    raise Conflict("could not find a free random app name; give one explicitly")


def create(session: Session, owner: User, name: str | None) -> App:
    name = check_name(name) if name is not None else random_name(session)
    if session.scalar(select(App.id).where(App.name == name)) is not None:
        raise InvalidParams(f"Name {name} is already taken; choose another")
    # A random uid from a wide range: concurrent creates never race for "the next" one,
    # and the unique constraint catches the (one in ~10^9) collision.
    uid = UID_BASE + secrets.randbelow(UID_RANGE)
    app = App(name=name, owner=owner, owner_id=owner.id, stack=STACK, region=REGION, uid=uid)
    session.add(app)
    session.flush()
    releases.create(session, app, "Initial release", {}, user=owner)
    return app


def visible(session: Session, user: User) -> list[App]:
    query = select(App).order_by(App.name)
    if not user.admin:
        shared = select(Collaborator.app_id).where(Collaborator.user_id == user.id)
        query = query.where(or_(App.owner_id == user.id, App.id.in_(shared)))
    return list(session.scalars(query))


def find(session: Session, user: User, identity: str, *, lock: bool = False) -> App:
    """The app named ``identity`` (or with that id) if ``user`` may see it.

    ``lock`` holds the app's row until the transaction ends, so that changes to the
    app's config and releases are made one at a time.
    """
    parsed = parse_uuid(identity)
    query = select(App).where(App.id == parsed if parsed else App.name == identity)
    if lock:
        query = query.with_for_update()
    app = session.scalar(query)
    if app is None or not may_access(session, user, app):
        raise NotFound(f"Couldn't find that app: {identity}. `dockyard apps` lists yours.")
    return app


def may_access(session: Session, user: User, app: App) -> bool:
    if user.admin or app.owner_id == user.id:
        return True
    found = session.scalar(
        select(Collaborator.id).where(
            Collaborator.app_id == app.id, Collaborator.user_id == user.id
        )
    )
    return found is not None


def require_owner(user: User, app: App, action: str) -> None:
    if not (user.admin or app.owner_id == user.id):
        raise Forbidden(f"only the owner of {app.name} ({app.owner.email}) can {action}")


def rename(session: Session, user: User, app: App, new_name: str) -> App:
    require_owner(user, app, "rename it")
    check_name(new_name)
    if new_name != app.name:
        if session.scalar(select(App.id).where(App.name == new_name)) is not None:
            raise InvalidParams(f"Name {new_name} is already taken; choose another")
        app.name = new_name
    return app


def destroy(session: Session, user: User, app: App) -> None:
    require_owner(user, app, "destroy it")
    session.delete(app)


def collaborators(session: Session, app: App) -> list[Collaborator]:
    query = (
        select(Collaborator).where(Collaborator.app_id == app.id).order_by(Collaborator.created_at)
    )
    return list(session.scalars(query))


def add_collaborator(session: Session, user: User, app: App, email: str) -> Collaborator:
    require_owner(user, app, "add collaborators")
    invited = get_user(session, email)
    if invited.id == app.owner_id:
        raise InvalidParams(f"{invited.email} owns {app.name} already")
    for existing in collaborators(session, app):
        if existing.user_id == invited.id:
            raise InvalidParams(f"{invited.email} is already a collaborator on {app.name}")
    collaborator = Collaborator(app=app, app_id=app.id, user=invited, user_id=invited.id)
    session.add(collaborator)
    session.flush()
    return collaborator


def find_collaborator(session: Session, app: App, identity: str) -> Collaborator:
    for collaborator in collaborators(session, app):
        if identity.lower() in (
            str(collaborator.id),
            str(collaborator.user_id),
            collaborator.user.email.lower(),
        ):
            return collaborator
    raise NotFound(f"{identity} is not a collaborator on {app.name}; `dockyard access` lists them")


def remove_collaborator(session: Session, user: User, app: App, collaborator: Collaborator) -> None:
    if collaborator.user_id != user.id:
        require_owner(user, app, "remove other collaborators")
    session.delete(collaborator)
