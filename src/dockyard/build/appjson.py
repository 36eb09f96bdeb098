"""``app.json``: env defaults, formation, buildpacks and scripts for an app."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import InvalidParams
from dockyard.releases import CONFIG_NAME

MAX_SIZE = 256 * 1024


class AppJsonError(InvalidParams):
    """app.json is malformed; the message says where."""


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None
    required: bool = True
    generator: str | None = None


@dataclass(frozen=True)
class AppJson:
    env: tuple[EnvVar, ...] = ()
    formation: dict[str, dict[str, Any]] = field(default_factory=dict)
    buildpacks: tuple[str, ...] = ()
    scripts: dict[str, str] = field(default_factory=dict)
    addons: tuple[str, ...] = ()

    def config_defaults(self, config: dict[str, str]) -> dict[str, str]:
        """Values to add to ``config``: defaults and generated secrets for unset names.

        Raises when a required variable has neither a value in config nor a default.
        """
        added: dict[str, str] = {}
        missing = []
        for var in self.env:
            if var.name in config:
                continue
            if var.generator == "secret":
                added[var.name] = secrets.token_hex(32)
            elif var.value is not None:
                added[var.name] = var.value
            elif var.required:
                missing.append(var.name)
        if missing:
            names = ", ".join(missing)
            raise AppJsonError(
                f"app.json requires config vars that are not set: {names}. "
                f"Set them with `dockyard config:set {missing[0]}=...` and push again."
            )
        return added


def parse(text: str) -> AppJson:
    if len(text.encode()) > MAX_SIZE:
        raise AppJsonError("app.json is over 256 kB")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AppJsonError(f"app.json is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(data, dict):
        raise AppJsonError("app.json must hold a JSON object")
    return AppJson(
        env=_env(data.get("env", {})),
        formation=_formation(data.get("formation", {})),
        buildpacks=_buildpacks(data.get("buildpacks", [])),
        scripts=_scripts(data.get("scripts", {})),
        addons=_addons(data.get("addons", [])),
    )


def _env(value: object) -> tuple[EnvVar, ...]:
    if not isinstance(value, dict):
        raise AppJsonError("app.json: env must be an object of names to settings")
    found = []
    for name, spec in value.items():
        if not CONFIG_NAME.match(name):
            raise AppJsonError(f"app.json: env name {name!r} is not a valid config var name")
        if isinstance(spec, str):
            found.append(EnvVar(name, value=spec))
            continue
        if not isinstance(spec, dict):
            raise AppJsonError(f"app.json: env.{name} must be a string or an object")
        default = spec.get("value")
        generator = spec.get("generator")
        if default is not None and not isinstance(default, str):
            raise AppJsonError(f"app.json: env.{name}.value must be a string")
        if generator not in (None, "secret"):
            raise AppJsonError(f'app.json: env.{name}.generator must be "secret" if given')
        required = spec.get("required", True)
        if not isinstance(required, bool):
            raise AppJsonError(f"app.json: env.{name}.required must be true or false")
        found.append(EnvVar(name, value=default, required=required, generator=generator))
    return tuple(found)


def _formation(value: object) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise AppJsonError("app.json: formation must be an object of process types")
    for name, spec in value.items():
        if not isinstance(spec, dict):
            raise AppJsonError(f"app.json: formation.{name} must be an object")
        quantity = spec.get("quantity", 1)
        if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0:
            raise AppJsonError(f"app.json: formation.{name}.quantity must be a whole number ≥ 0")
        size = spec.get("size")
        if size is not None and not isinstance(size, str):
            raise AppJsonError(f"app.json: formation.{name}.size must be a string")
    return dict(value)


def _buildpacks(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise AppJsonError('app.json: buildpacks must be a list of {"url": ...}')
    urls = []
    for item in value:
        url = item.get("url") if isinstance(item, dict) else None
        if not isinstance(url, str) or not url:
            raise AppJsonError('app.json: each buildpack must be an object with a "url"')
        urls.append(url)
    return tuple(urls)


def _scripts(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise AppJsonError("app.json: scripts must be an object of names to commands")
    return dict(value)


def _addons(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise AppJsonError("app.json: addons must be a list")
    plans = []
    for item in value:
        plan = item.get("plan") if isinstance(item, dict) else item
        if not isinstance(plan, str):
            raise AppJsonError('app.json: each addon must be a plan name or {"plan": ...}')
        plans.append(plan)
    return tuple(plans)
