"""The python buildpack's ``bin/compile``: a virtualenv at ``/app/.venv``, the way Heroku does it.

Run inside the build sandbox by the host's Debian Python as
``python_compile.py BUILDPACK_DIR BUILD_DIR CACHE_DIR ENV_DIR``. Steps:

1. exactly one package manager file: ``requirements.txt`` (pip), ``uv.lock`` (uv) or
   ``poetry.lock`` (poetry);
2. the interpreter: ``.python-version`` or ``runtime.txt`` (``3.12``, ``3.12.1``,
   ``python-3.12.1``) among ``$DOCKYARD_PYTHONS``, else the newest Debian ``python3.X``;
3. the virtualenv: restored from the build cache when its key (package manager files,
   interpreter) is unchanged, else installed and then copied to the cache;
4. Django's ``collectstatic`` when ``manage.py`` exists and Django is installed;
5. ``.profile.d/python.sh`` for dynos and ``export`` for later buildpacks.

The virtualenv is made at ``/app`` and holds absolute paths to it and to the interpreter,
which dynos see at the same places. Errors print Heroku's `` !     `` lines and exit 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INDENT = " " * 7
# Bump when the layout of the cached virtualenv changes, so old caches are not reused.
CACHE_FORMAT = 1
MANAGERS = {
    "requirements.txt": "pip",
    "uv.lock": "uv",
    "poetry.lock": "poetry",
    "Pipfile.lock": "pipenv",
}
UV = Path("/opt/dockyard/bin/uv")
POETRY_VERSION = "2.1.3"
DEBIAN_BIN = Path("/usr/bin")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
VERSION_SPEC = re.compile(r"^(?:python-?)?(3\.\d+(?:\.\d+)?)$")
# Config vars that would break the tools if passed through (Heroku keeps the same out).
WITHHELD = {
    "PATH",
    "HOME",
    "PYTHONHOME",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
    "LIBRARY_PATH",
    "CPATH",
    "GIT_DIR",
}


class Failure(Exception):
    """The build cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class Interpreter:
    path: Path
    version: tuple[int, int, int]

    @property
    def name(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def minor(self) -> tuple[int, int]:
        return self.version[0], self.version[1]


@dataclass(frozen=True)
class Paths:
    buildpack: Path
    app: Path
    cache: Path
    env: Path

    @property
    def venv(self) -> Path:
        return self.app / ".venv"

    @property
    def python_cache(self) -> Path:
        return self.cache / "python"


def step(message: str) -> None:
    print(f"-----> {message}", flush=True)


def info(message: str) -> None:
    print(f"{INDENT}{message}", flush=True)


def warn(message: str) -> None:
    print(f" !     {message}", flush=True)


def run(
    command: Sequence[str | Path],
    env: Mapping[str, str],
    cwd: Path,
    *,
    show: bool = True,
) -> tuple[int, list[str]]:
    """Run a tool, printing each line of its output indented; return its status and lines."""
    lines: list[str] = []
    with subprocess.Popen(
        [str(part) for part in command],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip()
            lines.append(line)
            if show and line.strip():
                info(line)
    return process.returncode, lines


def read_config(env_dir: Path) -> dict[str, str]:
    """The app's config vars (one file per variable), as Heroku passes them to build tools."""
    config: dict[str, str] = {}
    if not env_dir.is_dir():
        return config
    for entry in sorted(env_dir.iterdir()):
        if entry.is_file() and entry.name not in WITHHELD:
            config[entry.name] = entry.read_text(errors="replace")
    return config


def package_manager(app: Path) -> str:
    found = [name for name in MANAGERS if (app / name).is_file()]
    if len(found) > 1:
        raise Failure(
            f"Found more than one package manager file: {', '.join(found)}. "
            "Keep the one for the tool you use (requirements.txt for pip, uv.lock for uv, "
            "poetry.lock for poetry), delete the others, and push again."
        )
    if not found:
        raise Failure("No requirements.txt, uv.lock or poetry.lock was found.")
    manager = MANAGERS[found[0]]
    if manager == "pipenv":
        raise Failure(
            "Pipenv isn't supported. Export the locked dependencies with "
            "`pipenv requirements > requirements.txt`, commit requirements.txt, delete "
            "Pipfile.lock and push again."
        )
    if manager in ("uv", "poetry") and not (app / "pyproject.toml").is_file():
        raise Failure(f"{found[0]} was found but pyproject.toml is missing; commit both.")
    return manager


# --- the interpreter -------------------------------------------------------------------------


def requested_version(app: Path) -> tuple[str, str] | None:
    """The version the app asks for and the file that says so, or None."""
    for name in (".python-version", "runtime.txt"):
        path = app / name
        if not path.is_file():
            continue
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
        wanted = next((line for line in lines if line and not line.startswith("#")), "")
        match = VERSION_SPEC.match(wanted)
        if match is None:
            raise Failure(
                f"{name} holds {wanted!r}, which isn't a Python version this buildpack "
                "understands. Write a version such as 3.12 or 3.12.1"
                + (" (or python-3.12.1)." if name == "runtime.txt" else ".")
            )
        return match.group(1), name
    return None


def available_interpreters() -> list[Interpreter]:
    """Every interpreter in ``$DOCKYARD_PYTHONS`` that runs, newest first."""
    found: list[Interpreter] = []
    for entry in os.environ.get("DOCKYARD_PYTHONS", "").split():
        version = _version_of(Path(entry))
        if version is not None:
            found.append(Interpreter(Path(entry), version))
    # Stable sort: of two equal versions, the one listed first (Debian's) stays first.
    return sorted(found, key=lambda interpreter: interpreter.version, reverse=True)


def _version_of(path: Path) -> tuple[int, int, int] | None:
    try:
        done = subprocess.run(
            [path, "-c", "import sys; print(*sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        major, minor, micro = (int(part) for part in done.stdout.split())
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return major, minor, micro


def choose_interpreter(app: Path) -> Interpreter:
    interpreters = available_interpreters()
    if not interpreters:
        raise Failure(
            "No Python 3 interpreter was found on this server (DOCKYARD_PYTHONS is empty); "
            "the operator can install one with `apt-get install python3`."
        )
    requested = requested_version(app)
    if requested is None:
        debian = [i for i in interpreters if i.path.parent == DEBIAN_BIN]
        chosen = (debian or interpreters)[0]
        minor = f"{chosen.minor[0]}.{chosen.minor[1]}"
        step(f"No Python version was specified. Using the default, Python {minor}")
        info(f"To choose one, commit a .python-version file holding a version such as {minor}")
        return chosen
    spec, source = requested
    wanted = tuple(int(part) for part in spec.split("."))
    matching = [i for i in interpreters if i.version[: len(wanted)] == wanted]
    if not matching:
        versions = ", ".join(i.name for i in interpreters)
        raise Failure(
            f"Python {spec} (from {source}) isn't available on this server.\n"
            f"The versions available are: {versions}.\n"
            f"Change {source} to one of them (a major.minor such as "
            f"{interpreters[0].minor[0]}.{interpreters[0].minor[1]} picks the newest patch) "
            "and push again."
        )
    step(f"Using Python {spec} specified in {source}")
    return matching[0]


# --- the build cache -------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def requirement_files(app: Path, name: str = "requirements.txt") -> list[str]:
    """requirements.txt and the files it pulls in with ``-r``/``-c``, relative to the app."""
    seen: list[str] = []
    pending = [name]
    while pending:
        current = pending.pop()
        path = (app / current).resolve()
        if current in seen or not path.is_file() or not path.is_relative_to(app.resolve()):
            continue
        seen.append(current)
        base = Path(current).parent
        for line in path.read_text(errors="replace").splitlines():
            match = re.match(r"^\s*(?:-r|-c|--requirement|--constraint)[\s=]+(\S+)", line)
            if match:
                pending.append((base / match.group(1)).as_posix())
    return seen


def has_local_requirements(app: Path, files: Sequence[str]) -> bool:
    """Whether requirements name the app's own directories (their contents aren't in the key)."""
    for name in files:
        for raw in (app / name).read_text(errors="replace").splitlines():
            line = raw.split(" #", 1)[0].strip()
            if re.match(r"^(-e|--editable)\b|^\.|^/|^file:", line) or "@ file:" in line:
                return True
    return False


def key_files(app: Path, manager: str) -> list[str]:
    if manager == "pip":
        return requirement_files(app)
    if manager == "uv":
        return ["uv.lock", "pyproject.toml"]
    return ["poetry.lock", "pyproject.toml"]


def cache_metadata(app: Path, manager: str, interpreter: Interpreter) -> dict[str, Any]:
    """What the cached virtualenv was built from; it is reused only when all of it matches."""
    return {
        "format": CACHE_FORMAT,
        "manager": manager,
        "python": interpreter.name,
        "interpreter": str(interpreter.path),
        "files": {name: _digest(app / name) for name in key_files(app, manager)},
    }


def cache_mismatch(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """Why a cached virtualenv can't be used, or None when it can."""
    if old.get("format") != new["format"]:
        return "the buildpack changed how it caches"
    if old.get("manager") != new["manager"]:
        return f"the package manager changed from {old.get('manager')} to {new['manager']}"
    if old.get("python") != new["python"] or old.get("interpreter") != new["interpreter"]:
        return f"Python changed from {old.get('python')} to {new['python']}"
    old_files = old.get("files")
    old_files = old_files if isinstance(old_files, dict) else {}
    new_files: dict[str, str] = new["files"]
    changed = sorted(
        name
        for name in set(new_files) | set(old_files)
        if old_files.get(name) != new_files.get(name)
    )
    return f"{', '.join(changed)} changed" if changed else None


def restore_cache(paths: Paths, metadata: Mapping[str, Any]) -> bool:
    """Put the cached virtualenv at /app/.venv when it was built from the same inputs."""
    saved = paths.python_cache / "venv.json"
    cached = paths.python_cache / "venv"
    if not saved.is_file() or not cached.is_dir():
        return False
    try:
        old = json.loads(saved.read_text())
    except (ValueError, OSError):
        old = {}
    step("Restoring cache")
    reason = cache_mismatch(old if isinstance(old, dict) else {}, metadata)
    if reason is not None:
        info(f"Discarding the cached virtualenv: {reason}")
        return False
    subprocess.run(["/bin/cp", "-a", cached, paths.venv], check=True)
    files = ", ".join(metadata["files"])
    info(f"Using the cached virtualenv (Python {metadata['python']}; {files} unchanged)")
    return True


def save_cache(paths: Paths, metadata: Mapping[str, Any]) -> None:
    """Copy the new virtualenv to the cache; the metadata is written last, as the commit."""
    paths.python_cache.mkdir(parents=True, exist_ok=True)
    saved = paths.python_cache / "venv.json"
    cached = paths.python_cache / "venv"
    saved.unlink(missing_ok=True)
    shutil.rmtree(cached, ignore_errors=True)
    subprocess.run(["/bin/cp", "-a", paths.venv, cached], check=True)
    saved.write_text(json.dumps(metadata, indent=2))


# --- installers ------------------------------------------------------------------------------


def tool_env(config: Mapping[str, str], **extra: str) -> dict[str, str]:
    # The server's own certificate store, which its operator keeps (a company proxy's CA
    # included); uv and Poetry would otherwise use only the roots they bundle.
    trust = (
        {name: str(CA_BUNDLE) for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")}
        if CA_BUNDLE.is_file()
        else {}
    )
    env = {**os.environ, **trust, **config, **extra}
    env.pop("PYTHONHOME", None)
    env.pop("PYTHONPATH", None)
    return env


def make_venv(interpreter: Interpreter, venv: Path) -> None:
    info(f"Virtualenv {venv} from {interpreter.path}")
    status, _ = run([interpreter.path, "-m", "venv", venv], tool_env({}), venv.parent)
    if status != 0:
        raise Failure(
            f"Could not make a virtualenv with {interpreter.path} (exit status {status})."
        )


def install_pip(
    paths: Paths, interpreter: Interpreter, config: Mapping[str, str], restored: bool
) -> None:
    step("Installing requirements with pip")
    files = requirement_files(paths.app)
    if restored and not has_local_requirements(paths.app, files):
        info("Nothing to install: the cached virtualenv already has every requirement")
        return
    env = tool_env(config, PIP_CACHE_DIR=str(paths.python_cache / "pip"))
    status, _ = run(
        [
            paths.venv / "bin" / "python",
            "-m",
            "pip",
            "install",
            "--requirement",
            "requirements.txt",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            "--no-warn-script-location",
        ],
        env,
        paths.app,
    )
    if status != 0:
        raise Failure(
            f"pip couldn't install the packages in requirements.txt (exit status {status}); "
            "its output above says why."
        )


def install_uv(
    paths: Paths, interpreter: Interpreter, config: Mapping[str, str], restored: bool
) -> None:
    step("Installing dependencies with uv")
    if not os.access(UV, os.X_OK):
        raise Failure(
            "uv isn't installed on this Dockyard server. The operator can add it with "
            "`pip install uv` in Dockyard's environment; or commit a requirements.txt "
            "(`uv export --no-dev --format requirements-txt > requirements.txt`) instead of "
            "uv.lock."
        )
    env = tool_env(
        config,
        UV_PROJECT_ENVIRONMENT=str(paths.venv),
        UV_CACHE_DIR=str(paths.python_cache / "uv"),
        UV_PYTHON=str(interpreter.path),
        UV_PYTHON_DOWNLOADS="never",
        UV_PYTHON_PREFERENCE="only-system",
        # The cache and /app are different mounts: hard links between them would fail.
        UV_LINK_MODE="copy",
        UV_COMPILE_BYTECODE="1",
        UV_NO_PROGRESS="1",
    )
    if restored:
        info("Checking the cached virtualenv against uv.lock")
    status, _ = run([UV, "sync", "--frozen", "--no-dev"], env, paths.app)
    if status != 0:
        raise Failure(
            f"`uv sync --frozen --no-dev` failed (exit status {status}); its output above says "
            "why. If uv.lock is out of date, run `uv lock` and commit it."
        )


def poetry_tool(paths: Paths, env: Mapping[str, str]) -> Path:
    """Poetry itself, in its own virtualenv in the cache (made once per Poetry version)."""
    tool = paths.python_cache / "poetry-tool"
    marker = tool / "dockyard-version"
    poetry = tool / "bin" / "poetry"
    if marker.is_file() and marker.read_text() == POETRY_VERSION and poetry.exists():
        info(f"Using Poetry {POETRY_VERSION} from the build cache")
        return poetry
    info(f"Installing Poetry {POETRY_VERSION}")
    shutil.rmtree(tool, ignore_errors=True)
    base = next(
        (i for i in available_interpreters() if i.path.parent == DEBIAN_BIN and i.minor >= (3, 9)),
        None,
    ) or Interpreter(Path(sys.executable), (0, 0, 0))
    status, lines = run([base.path, "-m", "venv", tool], env, paths.app, show=False)
    if status == 0:
        status, lines = run(
            [
                tool / "bin" / "python",
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
                f"poetry=={POETRY_VERSION}",
            ],
            env,
            paths.app,
            show=False,
        )
    if status != 0:
        for line in lines[-20:]:
            info(line)
        raise Failure(f"Could not install Poetry {POETRY_VERSION} (exit status {status}).")
    marker.write_text(POETRY_VERSION)
    return poetry


def install_poetry(
    paths: Paths, interpreter: Interpreter, config: Mapping[str, str], restored: bool
) -> None:
    step("Installing dependencies with Poetry")
    env = tool_env(
        config,
        PIP_CACHE_DIR=str(paths.python_cache / "pip"),
        POETRY_CACHE_DIR=str(paths.python_cache / "poetry"),
        POETRY_VIRTUALENVS_IN_PROJECT="true",
        POETRY_VIRTUALENVS_CREATE="true",
        POETRY_NO_INTERACTION="1",
        VIRTUAL_ENV=str(paths.venv),
    )
    if restored:
        info("Nothing to install: the cached virtualenv already has every dependency")
        return
    poetry = poetry_tool(paths, env)
    status, _ = run([poetry, "install", "--only", "main", "--no-root", "--no-ansi"], env, paths.app)
    if status != 0:
        raise Failure(
            f"`poetry install --only main --no-root` failed (exit status {status}); its output "
            "above says why. If poetry.lock is out of date, run `poetry lock` and commit it."
        )


INSTALLERS = {"pip": install_pip, "uv": install_uv, "poetry": install_poetry}


# --- after the install -----------------------------------------------------------------------


def collectstatic(paths: Paths, config: Mapping[str, str]) -> None:
    """Django's static files, as Heroku collects them (DISABLE_COLLECTSTATIC=1 skips it)."""
    if not (paths.app / "manage.py").is_file():
        return
    python = paths.venv / "bin" / "python"
    env = tool_env(config, PYTHONUNBUFFERED="1")
    has_django = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util, sys; sys.exit(not importlib.util.find_spec('django'))",
        ],
        env=env,
        cwd=paths.app,
        capture_output=True,
        check=False,
    )
    if has_django.returncode != 0:
        return
    if config.get("DISABLE_COLLECTSTATIC", "").strip() not in ("", "0"):
        step("Skipping Django collectstatic since the env var DISABLE_COLLECTSTATIC is set.")
        return
    step("$ python manage.py collectstatic --noinput")
    status, _ = run([python, "manage.py", "collectstatic", "--noinput"], env, paths.app)
    if status != 0:
        raise Failure(
            "Unable to generate Django static files: `python manage.py collectstatic --noinput` "
            f"failed (exit status {status}); its output above says why.\n"
            "To skip this step, set the config var DISABLE_COLLECTSTATIC=1 "
            "(`dockyard config:set DISABLE_COLLECTSTATIC=1`)."
        )


def write_profile(paths: Paths) -> None:
    profile = paths.app / ".profile.d"
    profile.mkdir(exist_ok=True)
    (profile / "python.sh").write_text(
        "# Written by the python buildpack: the app's virtualenv comes first.\n"
        f'export PATH="{paths.venv}/bin:$PATH"\n'
        "export PYTHONUNBUFFERED=1\n"
        'export LANG="${LANG:-C.UTF-8}"\n'
        # The router is a proxy: let gunicorn trust its X-Forwarded-* headers.
        'export FORWARDED_ALLOW_IPS="${FORWARDED_ALLOW_IPS:-*}"\n'
    )
    # Buildpacks that run after this one see the virtualenv too.
    (paths.buildpack / "export").write_text(
        f'export PATH="{paths.venv}/bin:$PATH"\nexport VIRTUAL_ENV="{paths.venv}"\n'
    )


def compile_app(paths: Paths) -> None:
    config = read_config(paths.env)
    manager = package_manager(paths.app)
    interpreter = choose_interpreter(paths.app)
    if paths.venv.exists() or paths.venv.is_symlink():
        warn("Removing the .venv in the repository: the virtualenv is built here.")
        if paths.venv.is_dir() and not paths.venv.is_symlink():
            shutil.rmtree(paths.venv)
        else:
            paths.venv.unlink()
    metadata = cache_metadata(paths.app, manager, interpreter)
    restored = restore_cache(paths, metadata)
    if not restored:
        step(f"Installing Python {interpreter.name}")
        if manager == "uv":
            info(f"Virtualenv {paths.venv} from {interpreter.path} (made by uv)")
        else:
            make_venv(interpreter, paths.venv)
    INSTALLERS[manager](paths, interpreter, config, restored)
    if not restored:
        save_cache(paths, metadata)
        info("Saved the virtualenv to the build cache for the next build")
    collectstatic(paths, config)
    write_profile(paths)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 4:
        print("usage: python_compile.py BUILDPACK_DIR BUILD_DIR CACHE_DIR ENV_DIR", file=sys.stderr)
        return 2
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    paths = Paths(*(Path(arg) for arg in argv))
    try:
        compile_app(paths)
    except Failure as exc:
        print(flush=True)
        for line in str(exc).splitlines():
            warn(line)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
