"""What a failed order says in ``acm_status_reason``: the CA's own words for its problem
documents (validation, rate limits, subproblems), and a short reason for a CA that is down,
slow, or has a certificate we do not trust; our own bugs are not dressed up as the CA's."""

from __future__ import annotations

import pytest
import requests
from acme import challenges, messages
from acme import errors as acme_errors

from dockyard.certs.acme import AcmeError, describe, retry_after

DIRECTORY = "https://ca.example.net/directory"


def authorization(error: messages.Error) -> messages.AuthorizationResource:
    challenge = messages.ChallengeBody(
        chall=challenges.HTTP01(token=b"x" * 32),
        status=messages.STATUS_INVALID,
        error=error,
    )
    body = messages.Authorization(
        identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="www.example.org"),
        challenges=[challenge],
        status=messages.STATUS_INVALID,
    )
    return messages.AuthorizationResource(body=body, uri="https://ca.example.net/authz/1")


def test_a_failed_validation_gives_the_cas_detail() -> None:
    detail = "DNS problem: NXDOMAIN looking up A for www.example.org - check the DNS record"
    failed = acme_errors.ValidationError(
        [authorization(messages.Error.with_code("dns", detail=detail))]
    )
    assert describe(failed, DIRECTORY) == detail


def test_a_rate_limit_says_so_and_waits_an_hour() -> None:
    limited = messages.Error.with_code(
        "rateLimited", detail="too many certificates already issued for exact set of domains"
    )
    reason = describe(limited, DIRECTORY)
    assert reason == (
        "the CA rate-limits this account or domain: "
        "too many certificates already issued for exact set of domains"
    )
    assert retry_after(limited) == 3600.0
    assert retry_after(messages.Error.with_code("dns", detail="x")) is None


def test_subproblems_are_listed() -> None:
    error = messages.Error.with_code(
        "rejectedIdentifier",
        detail="Cannot issue for 2 identifiers",
        subproblems=(
            messages.Error.with_code("rejectedIdentifier", detail="a.invalid is not allowed"),
        ),
    )
    assert describe(error, DIRECTORY) == (
        "Cannot issue for 2 identifiers; a.invalid is not allowed"
    )


def test_a_problem_without_detail_uses_its_types_description() -> None:
    described = describe(messages.Error.with_code("caa"), DIRECTORY)
    assert described is not None
    assert "CAA" in described


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            requests.exceptions.ConnectionError(
                "HTTPSConnectionPool(host='ca.example.net', port=443): Max retries exceeded "
                "(Caused by NewConnectionError('<urllib3.connection.HTTPSConnection>: Failed "
                "to establish a new connection: [Errno 111] Connection refused'))"
            ),
            f"the ACME server at {DIRECTORY} could not be reached: Connection refused",
        ),
        (
            requests.exceptions.ReadTimeout("read timed out"),
            f"the ACME server at {DIRECTORY} could not be reached: no answer within 30s",
        ),
        (
            requests.exceptions.SSLError("certificate verify failed: self-signed certificate"),
            f"the ACME server at {DIRECTORY} has a certificate this server does not trust "
            "(set DOCKYARD_ACME_CA_FILE for a private CA): certificate verify failed: "
            "self-signed certificate",
        ),
    ],
)
def test_a_ca_that_cannot_be_reached(exc: Exception, expected: str) -> None:
    assert describe(exc, DIRECTORY) == expected


def test_a_ca_that_does_not_finish_in_time() -> None:
    reason = describe(acme_errors.TimeoutError(), DIRECTORY)
    assert reason is not None
    assert "in time" in reason


def test_our_own_bugs_are_not_the_cas() -> None:
    assert describe(KeyError("oops"), DIRECTORY) is None
    assert describe(AcmeError("already ours"), DIRECTORY) is None
