"""Whether an app's dynos run a given release yet: what a credential rotation waits for
before it revokes the old credentials."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import anyio.from_thread

ONE_OFF = ("run", "release")


def dynos_restarted(state: Any) -> Callable[[uuid.UUID, int], bool]:
    """``restarted(app_id, version)`` on the reconciler the server keeps in ``state`` (the
    API's ``app.state``); always true where no dynos run.

    It is called from the API's worker threads, which reach the server's event loop.
    """

    def restarted(app_id: uuid.UUID, version: int) -> bool:
        reconciler = getattr(state, "reconciler", None)
        if reconciler is None:
            return True
        try:
            dynos = anyio.from_thread.run(reconciler.dynos, app_id)
        except RuntimeError:  # not on one of the server's worker threads: nothing runs here
            return True
        return all(
            d.dyno.release_version >= version for d in dynos if d.dyno.process_type not in ONE_OFF
        )

    return restarted
