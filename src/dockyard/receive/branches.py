"""Which pushed ref deploys: the app's deploy branch, else ``main`` or ``master``."""

from __future__ import annotations

from dataclasses import dataclass

ZERO = "0" * 40


class Rejected(Exception):
    """The push must be refused; the message says how to deploy instead."""


@dataclass(frozen=True)
class Update:
    old: str
    new: str
    ref: str

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None


def parse(lines: list[str]) -> list[Update]:
    updates = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            updates.append(Update(*parts))
    return updates


def choose(updates: list[Update], configured: str | None) -> Update:
    """The update to deploy; raise :class:`Rejected` if the push holds anything else."""
    if not updates:
        raise Rejected("nothing was pushed")
    branches = {u.branch for u in updates}
    deploy = configured or ("master" if "master" in branches and "main" not in branches else "main")
    chosen = None
    for update in updates:
        if update.branch != deploy:
            name = update.branch or update.ref
            raise Rejected(
                f"Pushed to non-deploy branch {name}; only {deploy} deploys. "
                f"To deploy it, run: git push dockyard {name}:{deploy}"
            )
        chosen = update
    assert chosen is not None
    if chosen.new == ZERO:
        raise Rejected(f"Deleting the deploy branch {deploy} is not allowed")
    return chosen
