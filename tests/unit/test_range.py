"""Range headers whose values hold dots (timestamps, versions) still parse."""

from dockyard.api.paging import parse


def test_a_next_range_with_a_timestamp_parses() -> None:
    wanted = parse("created_at ]2026-11-26T16:00:00.123456+00:00..; max=2", ["created_at", "id"])
    assert wanted.start == "2026-11-26T16:00:00.123456+00:00"
    assert wanted.exclusive
    assert wanted.max == 2


def test_a_range_with_dotted_bounds_parses() -> None:
    wanted = parse("name v1.2..v1.9; order=desc", ["name"])
    assert (wanted.start, wanted.end, wanted.descending) == ("v1.2", "v1.9", True)
