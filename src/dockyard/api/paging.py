"""Heroku's ``Range`` paging for listings.

A client asks ``Range: name ..; max=200`` (optionally ``order=desc`` and a start and end
value, ``]`` before the start making it exclusive). A response that holds all that is
left is ``200``; a cut-short one is ``206`` with ``Next-Range`` to ask for the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request, Response

from dockyard.errors import BadRequest

T = TypeVar("T")
DEFAULT_MAX = 200
LIMIT = 1000
_RANGE = re.compile(
    r"^\s*(?P<field>[a-z_]+)\s*(?:(?P<exclusive>\])?(?P<start>[^;]*?)\.\.(?P<end>[^;]*))?\s*(?:;\s*(?P<options>.*))?$"
)


@dataclass(frozen=True)
class Range:
    field: str
    start: str = ""
    end: str = ""
    exclusive: bool = False
    max: int = DEFAULT_MAX
    descending: bool = False

    def header(self) -> str:
        order = "desc" if self.descending else "asc"
        start = f"]{self.start}" if self.exclusive else self.start
        return f"{self.field} {start}..{self.end}; max={self.max}, order={order}"


def parse(header: str | None, fields: Sequence[str]) -> Range:
    if not header:
        return Range(field=fields[0])
    match = _RANGE.match(header)
    if not match or match["field"] not in fields:
        raise BadRequest(
            f"Range header {header!r} is not understood; use e.g. "
            f"'{fields[0]} ..; max=200' where the field is one of: {', '.join(fields)}"
        )
    size, descending = DEFAULT_MAX, False
    for option in filter(None, re.split(r"[,;]\s*", match["options"] or "")):
        name, _, value = option.strip().partition("=")
        if name == "max" and value.isdigit() and 1 <= int(value) <= LIMIT:
            size = int(value)
        elif name == "order" and value in ("asc", "desc"):
            descending = value == "desc"
        else:
            raise BadRequest(
                f"Range option {option!r} is not understood; use max=1..{LIMIT} and order=asc|desc"
            )
    return Range(
        field=match["field"],
        start=(match["start"] or "").strip(),
        end=(match["end"] or "").strip(),
        exclusive=bool(match["exclusive"]),
        max=size,
        descending=descending,
    )


def paginate(
    request: Request,
    response: Response,
    items: Sequence[T],
    keys: dict[str, Callable[[T], Any]],
) -> list[T]:
    """Sort, filter and cut ``items`` as the request's Range asks; set the headers."""
    wanted = parse(request.headers.get("range"), list(keys))
    key = keys[wanted.field]
    ordered = sorted(items, key=lambda item: _sortable(key(item)), reverse=wanted.descending)
    chosen = [item for item in ordered if _within(str(key(item)), key(item), wanted)]
    shown = chosen[: wanted.max]
    if shown:
        response.headers["Content-Range"] = f"{wanted.field} {key(shown[0])}..{key(shown[-1])}"
    if len(chosen) > len(shown):
        response.status_code = 206
        response.headers["Next-Range"] = Range(
            field=wanted.field,
            start=str(key(shown[-1])),
            exclusive=True,
            max=wanted.max,
            descending=wanted.descending,
        ).header()
    response.headers["Accept-Ranges"] = ", ".join(keys)
    return shown


def _sortable(value: Any) -> Any:
    return value if isinstance(value, int) else str(value)


def _within(text: str, value: Any, wanted: Range) -> bool:
    def compare(bound: str) -> int:
        if isinstance(value, int) and bound.lstrip("-").isdigit():
            other = int(bound)
            return int(value > other) - int(value < other)
        return (text > bound) - (text < bound)

    before, after = (1, -1) if not wanted.descending else (-1, 1)
    if wanted.start:
        position = compare(wanted.start)
        if position == -before or (wanted.exclusive and position == 0):
            return False
    if wanted.end:
        position = compare(wanted.end)
        if position == -after:
            return False
    return True
