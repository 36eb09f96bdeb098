"""Add-ons: backing services (a database, a Redis, a bucket) attached to apps through config.

An add-on is provisioned by a :class:`Provider` for one service, on one of its plans; an
attachment gives an app its credentials as config vars named after the attachment
(``DATABASE`` → ``DATABASE_URL``). Providers are plugins on the ``dockyard_addon_providers``
hook (:mod:`dockyard.plugins`); the built-in ones (:mod:`dockyard.addons.builtin`) are
registered exactly as a third party's would be.
"""

from __future__ import annotations

from dockyard.addons._addons import (
    Addons,
    attachments_of_addon,
    attachments_of_app,
    check_addon_name,
    check_attachment_name,
    config_names,
    find,
    find_attachment,
    of_app,
    visible,
)
from dockyard.addons._provider import Catalog, Data, Plan, Provider, Provisioning
from dockyard.addons._restarts import dynos_restarted
from dockyard.addons._supervisor import Supervisor

__all__ = [
    "Addons",
    "Catalog",
    "Data",
    "Plan",
    "Provider",
    "Provisioning",
    "Supervisor",
    "attachments_of_addon",
    "attachments_of_app",
    "check_addon_name",
    "check_attachment_name",
    "config_names",
    "dynos_restarted",
    "find",
    "find_attachment",
    "of_app",
    "visible",
]
