"""``app.json``: env defaults, formation, buildpacks and scripts for an app."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import InvalidParams
from dockyard.releases import CONFIG_NAME

MAX_SIZE = 256 * 1024
# Heroku's rules for an add-on's attachment name (its config vars' prefix) and option names;
# dockyard.addons checks the same when an add-on is made.
ATTACHMENT_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,49}$")
OPTION_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


class AppJsonError(InvalidParams):
    """app.json is malformed; the message says where."""


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None
    required: bool = True
    generator: str | None = None


@dataclass(frozen=True)
class AddonSpec:
    """One entry of app.json's ``addons``: ``"postgres:standard"``, or an object with
    ``plan``, ``as`` (the attachment name: ``CACHE`` gives ``CACHE_URL``) and ``options``
    (passed to the provider, as ``addons:create -- --key value`` would)."""

    plan: str
    as_name: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.plan} as {self.as_name}" if self.as_name else self.plan


@dataclass(frozen=True)
class AppJson:
    env: tuple[EnvVar, ...] = ()
    formation: dict[str, dict[str, Any]] = field(default_factory=dict)
    buildpacks: tuple[str, ...] = ()
    scripts: dict[str, str] = field(default_factory=dict)
    addons: tuple[AddonSpec, ...] = ()
    # A Dockerfile app's build arguments (``"build": {"args": {...}}``); never config vars.
    build_args: dict[str, str] = field(default_factory=dict)

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
        build_args=_build_args(data.get("build", {})),
    )


def _build_args(value: object) -> dict[str, str]:
    """``"build": {"args": {"NAME": "value"}}``: the Dockerfile's ``ARG`` values."""
    if not isinstance(value, dict) or not isinstance(value.get("args", {}), dict):
        raise AppJsonError(
            'app.json: "build" must be an object like {"args": {"NODE_ENV": "production"}}'
        )
    unknown = sorted(set(value) - {"args"})
    if unknown:
        raise AppJsonError(f'app.json: "build" has unknown keys {unknown}; it takes "args"')
    found: dict[str, str] = {}
    for name, arg in value.get("args", {}).items():
        if not ARG_NAME.match(name):
            raise AppJsonError(
                f"app.json: build arg {name!r} is not a valid name (letters, digits and _)"
            )
        if not isinstance(arg, str):
            raise AppJsonError(f"app.json: build arg {name} must be a string")
        found[name] = arg
    return found


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


def _addons(value: object) -> tuple[AddonSpec, ...]:
    if not isinstance(value, list):
        raise AppJsonError("app.json: addons must be a list")
    specs: list[AddonSpec] = []
    for index, item in enumerate(value):
        where = f"app.json: addons[{index}]"
        if isinstance(item, str):
            specs.append(AddonSpec(_plan(item, where)))
            continue
        if not isinstance(item, dict):
            raise AppJsonError(f'{where} must be a plan name or {{"plan": ...}}')
        unknown = sorted(set(item) - {"plan", "as", "options"})
        if unknown:
            raise AppJsonError(
                f"{where} has {unknown[0]!r}, which is not an add-on key: an entry takes "
                '"plan", "as" and "options"'
            )
        plan = item.get("plan")
        if not isinstance(plan, str):
            raise AppJsonError(f'{where} must have a "plan", such as "postgres:standard"')
        spec = AddonSpec(
            _plan(plan, where),
            _as_name(item.get("as"), where),
            _options(item.get("options"), where),
        )
        if spec.as_name is not None and spec.as_name in {s.as_name for s in specs}:
            raise AppJsonError(
                f"{where}: {spec.as_name} is the attachment name of an earlier add-on too; "
                "each must be attached under a name of its own"
            )
        specs.append(spec)
    return tuple(specs)


def _plan(plan: str, where: str) -> str:
    if not plan.strip():
        raise AppJsonError(f'{where}: the plan is empty; name a service, such as "postgres"')
    return plan.strip()


def _as_name(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not ATTACHMENT_NAME.match(value):
        raise AppJsonError(
            f'{where}: "as" is {json.dumps(value)}: the attachment name becomes the prefix of '
            "its config vars (CACHE gives CACHE_URL), so it must start with an uppercase "
            "letter and hold only uppercase letters, digits and underscores, at most 50"
        )
    return value


def _options(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AppJsonError(f'{where}: "options" must be an object of option names to values')
    found: dict[str, str] = {}
    for key, option in value.items():
        if not OPTION_NAME.match(key):
            raise AppJsonError(f"{where}: option {key!r} is not a valid option name")
        if isinstance(option, bool):
            found[key] = str(option).lower()
        elif isinstance(option, str | int | float):
            found[key] = str(option)
        else:
            raise AppJsonError(f"{where}: option {key!r} must be a string, a number or true/false")
    return found
