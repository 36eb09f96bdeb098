"""The ACME client: a certificate for one hostname from an ACME CA (RFC 8555).

Built on ``acme``, certbot's library. :class:`AcmeClient` holds the platform's account with
the CA (its key under ``<data dir>/acme/``, readable by the platform only, one per directory
URL) and orders one certificate per hostname: the HTTP-01 challenge is answered by the
router (a :class:`Responder`), then the order is finalized and the chain downloaded. The
library blocks; its calls run in threads, and the router is driven from the loop.

Errors::

    DockyardError
    └── AcmeError     the CA refused or failed the order, or could not be reached;
                      ``reason`` is for the domain's ``acm_status_reason`` (the CA's own
                      words when it gave some)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import requests
from acme import challenges, client, crypto_util, messages
from acme import errors as acme_errors
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.errors import DeserializationError
from josepy.jwk import JWKRSA

from dockyard import __version__
from dockyard.errors import DockyardError

log = logging.getLogger("dockyard.certs.acme")

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
VALIDATION_TIMEOUT = 90.0  # seconds the CA may take to validate and issue
NETWORK_TIMEOUT = 30  # seconds for each request to the CA
_T = TypeVar("_T")
_C = TypeVar("_C", challenges.HTTP01, challenges.DNS01)


class AcmeError(DockyardError):
    """The CA refused or failed an order, or could not be reached."""

    id = "acme_failed"
    status = 502

    def __init__(
        self, reason: str, *, retry_after: float | None = None, lost_account: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after  # seconds the CA asked us to wait (rate limits)
        self.lost_account = lost_account  # the CA does not know the platform's account


@dataclass(frozen=True)
class Issued:
    """A certificate the CA issued: its chain (leaf first) and key, in PEM."""

    hostname: str
    chain_pem: str
    key_pem: str
    not_after: datetime.datetime


class Responder(Protocol):
    """Who answers ``http://<hostname>/.well-known/acme-challenge/<token>``: the router."""

    async def publish_challenge(self, token: str, key_authorization: str) -> None: ...

    async def withdraw_challenge(self, token: str) -> None: ...


class DnsResponder(Protocol):
    """Who publishes the TXT records of DNS-01 challenges: the operator's hook."""

    async def publish_txt(self, name: str, value: str) -> None: ...

    async def withdraw_txt(self, name: str, value: str) -> None: ...


class AcmeClient:
    """Orders certificates from the CA at ``directory`` (see the module's docstring)."""

    def __init__(
        self,
        directory: str,
        account_dir: Path,
        *,
        email: str = "",
        ca_file: Path | None = None,
        timeout: float = VALIDATION_TIMEOUT,
    ) -> None:
        self.directory = directory
        self.email = email
        self.ca_file = ca_file
        self.timeout = timeout
        # One account per CA: a new directory URL (Let's Encrypt → a private CA) registers anew.
        digest = hashlib.sha256(directory.encode()).hexdigest()[:16]
        self.account_dir = account_dir / digest
        self._lock = threading.Lock()  # one registration at a time
        self._key: JWKRSA | None = None

    async def issue(
        self, hostname: str, responder: Responder, *, dns: DnsResponder | None = None
    ) -> Issued:
        """A new key and a certificate for ``hostname``; AcmeError with the CA's reason.

        The CA's HTTP-01 challenge is answered through ``responder``; with ``dns``, its DNS-01
        challenge through that instead (the only one a wildcard such as ``*.example.com`` has).
        """
        try:
            return await self._issue(hostname, responder, dns)
        except AcmeError as exc:
            if not exc.lost_account:
                raise
            # A CA that was reset (a test CA, a new private CA) forgot the account: once more,
            # with a new registration.
            log.info("the CA at %s does not know our account; registering again", self.directory)
            return await self._issue(hostname, responder, dns)

    async def _issue(
        self, hostname: str, responder: Responder, dns: DnsResponder | None
    ) -> Issued:
        key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        csr_pem = crypto_util.make_csr(key_pem, [hostname])
        acme = await self._call(self._client)
        order = await self._call(lambda: acme.new_order(csr_pem))
        published: list[Callable[[], Awaitable[None]]] = []  # how to withdraw each
        try:
            for authorization in order.authorizations:
                if authorization.body.status == messages.STATUS_VALID:
                    continue  # the CA reuses one validated before
                if dns is None:
                    body, http01 = _challenge(hostname, authorization, challenges.HTTP01)
                    response, key_authorization = http01.response_and_validation(acme.net.key)
                    token = http01.encode("token")
                    await responder.publish_challenge(token, str(key_authorization))
                    published.append(functools.partial(responder.withdraw_challenge, token))
                else:
                    body, dns01 = _challenge(hostname, authorization, challenges.DNS01)
                    response, value = dns01.response_and_validation(acme.net.key)
                    name = dns01.validation_domain_name(authorization.body.identifier.value)
                    await dns.publish_txt(name, str(value))
                    published.append(functools.partial(dns.withdraw_txt, name, str(value)))
                await self._call(functools.partial(acme.answer_challenge, body, response))
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=self.timeout)
            order = await self._call(lambda: acme.poll_and_finalize(order, deadline))
        finally:
            for withdraw in published:
                try:
                    await withdraw()
                except DockyardError as exc:
                    log.warning("could not withdraw an ACME challenge: %s", exc.message)
        chain = order.fullchain_pem
        if not chain:
            raise AcmeError("the CA finished the order but sent no certificate")
        try:
            leaf = x509.load_pem_x509_certificates(chain.encode())[0]
        except ValueError as exc:
            raise AcmeError(f"the CA sent a certificate that does not parse: {exc}") from exc
        return Issued(hostname, chain, key_pem.decode(), leaf.not_valid_after_utc)

    async def _call(self, call: Callable[[], _T]) -> _T:
        """Run one blocking call of the library in a thread, its errors made AcmeErrors."""
        try:
            return await asyncio.to_thread(call)
        except AcmeError:
            raise
        except Exception as exc:
            reason = describe(exc, self.directory)
            if reason is None:
                raise
            lost = _lost_account(exc)
            if lost:  # in a thread: a registration may hold the lock
                await asyncio.to_thread(self._forget_account)
            raise AcmeError(reason, retry_after=retry_after(exc), lost_account=lost) from exc

    # -- the account ---------------------------------------------------------------------

    def _client(self) -> client.ClientV2:
        """A client for one order, on the platform's account (registered if need be)."""
        key = self._account_key()
        network = client.ClientNetwork(
            key, user_agent=f"dockyard/{__version__}", timeout=NETWORK_TIMEOUT
        )
        # requests takes a CA bundle's path where the library passes verify_ssl.
        network.verify_ssl = cast("bool", str(self.ca_file) if self.ca_file else True)
        directory = client.ClientV2.get_directory(self.directory, network)
        acme = client.ClientV2(directory, network)
        with self._lock:
            uri = self._account_uri()
            if uri is None:
                uri = self._register(acme)
        network.account = messages.RegistrationResource(uri=uri, body=messages.Registration())
        return acme

    def _register(self, acme: client.ClientV2) -> str:
        registration = messages.NewRegistration.from_data(
            email=self.email or None, terms_of_service_agreed=True
        )
        try:
            uri = acme.new_account(registration).uri
        except acme_errors.ConflictError as exc:
            uri = exc.location  # the key has an account already
        if not uri:
            raise AcmeError("the CA registered the account but gave no account URL")
        self._save(self.account_dir / "account.json", json.dumps({"uri": uri}))
        log.info("registered the platform's ACME account with %s", self.directory)
        return uri

    def _account_uri(self) -> str | None:
        try:
            found: dict[str, Any] = json.loads((self.account_dir / "account.json").read_text())
        except (OSError, ValueError):
            return None
        uri = found.get("uri")
        return uri if isinstance(uri, str) else None

    def _forget_account(self) -> None:
        with self._lock, contextlib.suppress(FileNotFoundError):
            (self.account_dir / "account.json").unlink()

    def _account_key(self) -> JWKRSA:
        if self._key is not None:
            return self._key
        path = self.account_dir / "account.key"
        with self._lock:
            try:
                loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            except FileNotFoundError:
                loaded = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                self._save(
                    path,
                    loaded.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ).decode(),
                )
            except ValueError as exc:
                raise AcmeError(f"the ACME account key {path} does not load: {exc}") from exc
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise AcmeError(f"the ACME account key {path} is not an RSA key")
            self._key = JWKRSA(key=loaded)
        return self._key

    def _save(self, path: Path, text: str) -> None:
        """Write ``text`` readable by the platform only (0600, in 0700 directories)."""
        for directory in (path.parent.parent, path.parent):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(directory, 0o700)
        temporary = path.with_name(f".{path.name}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.replace(temporary, path)


def _challenge(
    hostname: str, authorization: messages.AuthorizationResource, kind: type[_C]
) -> tuple[messages.ChallengeBody, _C]:
    for body in authorization.body.challenges:
        if isinstance(body.chall, kind):
            return body, body.chall
    offered = ", ".join(str(b.chall.typ) for b in authorization.body.challenges) or "none"
    raise AcmeError(
        f"the CA offers no {kind.typ} challenge for {hostname} (it offers: {offered})"
        + ("; a wildcard needs DNS-01 (DOCKYARD_ACME_DNS_HOOK)" if hostname[:2] == "*." else "")
    )


def describe(exc: BaseException, directory: str) -> str | None:
    """What went wrong, for the domain's status; None for an error that is a bug of ours."""
    reason = _ca_reason(exc)
    if reason is not None:
        return reason
    if isinstance(exc, requests.exceptions.SSLError):
        return (
            f"the ACME server at {directory} has a certificate this server does not trust "
            f"(set DOCKYARD_ACME_CA_FILE for a private CA): {_first_line(exc)}"
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return f"the ACME server at {directory} could not be reached: {_network_problem(exc)}"
    if isinstance(exc, acme_errors.Error | DeserializationError):
        return f"the ACME server at {directory} answered in a way this client cannot use: {exc}"
    return None


def _ca_reason(exc: BaseException) -> str | None:
    """The CA's own account of a failed order, when it gave one."""
    if isinstance(exc, acme_errors.ValidationError):
        problems = [
            _problem(challenge.error)
            for authorization in exc.failed_authzrs
            for challenge in authorization.body.challenges
            if challenge.error is not None
        ]
        return "; ".join(problems) or "the CA could not validate the domain"
    if isinstance(exc, acme_errors.IssuanceError):
        return _problem(exc.error)
    if isinstance(exc, messages.Error):
        return _problem(exc)
    if isinstance(exc, acme_errors.TimeoutError):
        return "the CA did not finish validating the domain in time; it will be tried again"
    return None


def _problem(error: messages.Error) -> str:
    """The CA's words for a problem document (``detail``, else its type's description)."""
    text = error.detail or error.description or error.title or str(error.typ)
    if error.code == "rateLimited":
        text = f"the CA rate-limits this account or domain: {text}"
    for sub in error.subproblems or ():
        text += f"; {_problem(sub)}"
    return text


def _network_problem(exc: BaseException) -> str:
    """The gist of a requests error ("Connection refused"), not its nested reprs."""
    text = str(exc)
    found = _ERRNO.search(text)
    if found:
        return found.group(1).strip()
    if isinstance(exc, requests.exceptions.Timeout):
        return f"no answer within {NETWORK_TIMEOUT}s"
    return _first_line(exc)


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def _lost_account(exc: BaseException) -> bool:
    """The CA does not know our account (it was reset, as a test CA is): register again."""
    return isinstance(exc, messages.Error) and exc.code == "accountDoesNotExist"


def retry_after(exc: BaseException) -> float | None:
    """A rate limit's wait, when the CA said how long."""
    if isinstance(exc, messages.Error) and exc.code == "rateLimited":
        return 3600.0
    return None
