"""The control plane's own log: one logfmt line per event, whatever the message holds."""

from __future__ import annotations

import logging
import re
import sys

from dockyard.logfmt import LogfmtFormatter, quote


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("dockyard.drains", logging.WARNING, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_each_event_is_one_key_value_line() -> None:
    line = LogfmtFormatter().format(
        record("drain %s failed", "d.1", drain="d.1", reason='refused "now"\nagain')
    )
    assert re.fullmatch(
        r"time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 level=warn logger=dockyard\.drains "
        r'drain=d\.1 reason="refused \\"now\\"\\nagain" msg="drain d\.1 failed"',
        line,
    ), line


def test_values_are_quoted_only_when_needed_and_tracebacks_stay_on_one_line() -> None:
    assert quote("plain") == "plain"
    assert quote("") == '""'
    assert quote("a=b") == '"a=b"'
    assert quote("bell\x07") == '"bell\\x07"'
    try:
        raise ValueError("boom")
    except ValueError:
        failed = record("failed")
        failed.exc_info = sys.exc_info()
    line = LogfmtFormatter().format(failed)
    assert "\n" not in line
    assert line.endswith('ValueError: boom"')
    assert ' error="Traceback (most recent call last):\\n' in line
