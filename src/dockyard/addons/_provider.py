"""What an add-on provider is, and the catalogue of the providers the plugins offer."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from dockyard.errors import InvalidParams, NotFound
from dockyard.settings import Settings

log = logging.getLogger("dockyard.addons")

Data = dict[str, Any]
SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,48}[a-z0-9]$")


@dataclass(frozen=True)
class Plan:
    """One plan of a service: its name (``standard``) and the limits a provider enforces."""

    name: str
    description: str
    limits: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Provisioning:
    """What a provider is asked to make: for the add-on ``name`` on ``plan``.

    ``options`` are the ``-- --key value`` options given to ``addons:create``.
    """

    addon_id: str
    name: str
    plan: Plan
    options: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    """One add-on service: how to provision, wire up, rotate and remove an instance of it.

    ``provision`` makes everything an add-on needs and returns the provider's data about it
    (credentials included), which the state store keeps; if it fails it removes whatever it
    made, then raises :class:`~dockyard.errors.AddonFailed`. ``deprovision`` is idempotent.
    ``config_vars`` maps suffixes to values: ``{"URL": "postgres://…"}`` becomes
    ``DATABASE_URL`` under the attachment name ``DATABASE`` (``config_var_suffixes`` names
    them all beforehand). ``rotate`` returns the data with new credentials, the old ones
    still working (so that dynos keep running until they restart with the new ones);
    ``revoke`` then revokes every such retired credential, ending the sessions that still use
    it, and returns the data without them. ``info`` is what ``addons:info`` shows;
    ``change_plan`` applies another plan's limits and returns the data (raising
    :class:`~dockyard.errors.InvalidParams` when the add-on does not fit the plan), and
    ``enforce``, called every minute or so, applies limits the server does not enforce
    itself (a database's size) and returns the data.
    ``ensure_running`` starts an add-on's server when the platform runs it and it is not
    running (the control plane calls it at start and every few seconds); a provider whose
    servers the operator runs does nothing.

    A provider may also have ``option_names``, the options (``-- --key value``, or app.json's
    ``options``) it takes: any other is refused, naming it. Without it, every option is
    passed on (see :func:`check_provider_options`).
    """

    service: str
    human_name: str
    description: str
    aliases: tuple[str, ...]
    name_prefix: str
    default_attachment: str
    config_var_suffixes: tuple[str, ...]
    plans: Sequence[Plan]

    def provision(self, request: Provisioning) -> Data: ...

    def deprovision(self, data: Mapping[str, Any]) -> None: ...

    def config_vars(self, data: Mapping[str, Any]) -> dict[str, str]: ...

    def rotate(self, data: Mapping[str, Any]) -> Data: ...

    def revoke(self, data: Mapping[str, Any]) -> Data: ...

    def change_plan(self, data: Mapping[str, Any], plan: Plan) -> Data: ...

    def enforce(self, data: Mapping[str, Any]) -> Data: ...

    def info(self, data: Mapping[str, Any]) -> dict[str, str]: ...

    def ensure_running(self, data: Mapping[str, Any]) -> None: ...


def check_provider_options(provider: Provider, options: Mapping[str, str]) -> None:
    """Refuse options ``provider`` does not take (its ``option_names``), naming the first."""
    accepted: Sequence[str] | None = getattr(provider, "option_names", None)
    if accepted is None:
        return
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = f"it takes {', '.join(accepted)}" if accepted else "it takes none"
        raise InvalidParams(f"{provider.service} has no option {unknown[0]!r}; {takes}")


class Catalog:
    """The services on offer, from every plugin's ``dockyard_addon_providers``."""

    def __init__(self, providers: Sequence[Provider]) -> None:
        self._providers: dict[str, Provider] = {}
        self._aliases: dict[str, str] = {}
        for provider in providers:
            if not SERVICE_NAME.match(provider.service) or not provider.plans:
                raise ValueError(f"add-on provider {provider!r} has a bad service name or no plans")
            if provider.service in self._providers:
                raise ValueError(f"two add-on providers offer the service {provider.service!r}")
            self._providers[provider.service] = provider
            for alias in provider.aliases:
                self._aliases.setdefault(alias, provider.service)

    @classmethod
    def from_plugins(cls, settings: Settings) -> Catalog:
        from dockyard.plugins import manager

        found: list[Provider] = []
        for providers in manager().hook.dockyard_addon_providers(settings=settings):
            found.extend(providers)
        return cls(found)

    def services(self) -> list[Provider]:
        return sorted(self._providers.values(), key=lambda p: p.service)

    def provider(self, service: str) -> Provider:
        name = self._aliases.get(service, service)
        found = self._providers.get(name)
        if found is None:
            known = ", ".join(sorted(self._providers)) or "none"
            raise NotFound(
                f"Couldn't find add-on service {service!r}; the services here are: {known}. "
                "`dockyard addons:services` lists them."
            )
        return found

    def plan(self, spec: str) -> tuple[Provider, Plan]:
        """``postgres`` (its default plan, the first) or ``postgres:standard``."""
        service, _, plan_name = spec.strip().partition(":")
        provider = self.provider(service)
        if not plan_name:
            return provider, provider.plans[0]
        for plan in provider.plans:
            if plan.name == plan_name:
                return provider, plan
        names = ", ".join(p.name for p in provider.plans)
        raise InvalidParams(
            f"{provider.service} has no plan {plan_name!r}; its plans are: {names}. "
            f"`dockyard addons:plans {provider.service}` describes them."
        )
