# shellcheck shell=bash
# Install steps shared by scripts/test and scripts/quickstart; source it, then call the
# steps you need. Each step checks first and installs only what is missing, so running
# it again is cheap. Written for Debian and Ubuntu, as root (or with sudo).
#
#   find_python          PYTHON=a Python >= 3.11 (python3.13, 3.12, 3.11, python3; else apt)
#   ensure_debian CMD=PKG ...   apt-get install the PKGs whose CMD is not on PATH
#   ensure_venv [EXTRAS] .venv with the package installed editable, pinned by constraints.txt
#   ensure_platform      bubblewrap, setpriv, Node.js, nginx, HAProxy and Debian's
#                        python3-venv: what builds, dynos and the router use
#                        (and redis-server, PostgreSQL, MariaDB, psql and redis-cli for
#                        add-ons; wrk for bench/router.py)
#   ensure_heroku_cli    the official Heroku CLI under .cache/heroku-cli; exports
#                        DOCKYARD_TEST_HEROKU_CLI
#   ensure_postgres      PostgreSQL answering at 127.0.0.1:5432 (installed and started
#                        with trust auth for local TCP if there is none)
#   ensure_docker        Debian's docker.io and debootstrap (the docker runtime and its
#                        stack image), dockerd answering on /var/run/docker.sock
#   ensure_swarm         Debian's docker-registry (the registry on a swarm's manager), and
#                        ip, nsenter, unshare and socat for the two-node swarm tests
#   ensure_pebble        Debian's pebble: the ACME test server (and pebble-challtestsrv,
#                        its mock DNS) that the automated-certificate tests run on loopback

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV="$REPO/.venv"
CONSTRAINTS="$REPO/constraints.txt"
HEROKU_CLI_VERSION=11.10.0
HEROKU_CLI_DIR="$REPO/.cache/heroku-cli"
MIN_PYTHON=3.11

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly when we are root, else through sudo when there is one.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "needs root to run: $*  (run this script as root, or install sudo)"
    fi
}

_apt_updated=""
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install these by hand: $*"
    if [ -z "$_apt_updated" ]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _apt_updated=1
    fi
    say "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ensure_debian git=git ssh-keygen=openssh-client ...: one apt-get run for every package
# whose command is missing, and no apt-get at all when nothing is.
ensure_debian() {
    local pair missing=()
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null || missing+=("${pair#*=}")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

_python_ok() {
    "$1" -c "import sys; sys.exit(sys.version_info < (${MIN_PYTHON/./, }))" 2>/dev/null
}

# Sets PYTHON to the absolute path of the first Python >= 3.11 found; pyenv shims for
# versions that are not installed fail the check and are skipped.
find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null && _python_ok "$candidate"; then
            PYTHON=$("$candidate" -c 'import sys; print(sys.executable)')
            _ensure_venv_module
            return
        fi
    done
    apt_install python3 python3-venv
    _python_ok python3 || die "Python >= $MIN_PYTHON is needed; this system's python3 is $(python3 --version 2>&1)"
    PYTHON=$(python3 -c 'import sys; print(sys.executable)')
}

# Debian splits venv's pip bootstrap (ensurepip) into pythonX.Y-venv.
_ensure_venv_module() {
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        apt_install "python$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"
    fi
}

# ensure_venv [EXTRAS]: create .venv if it is missing or broken, then install the package
# editable with EXTRAS (e.g. "test"), every version pinned by constraints.txt. Skipped when
# pyproject.toml, constraints.txt and EXTRAS are as they were at the last install.
ensure_venv() {
    local extras="${1:-}" spec="." stamp want
    [ -n "$extras" ] && spec=".[$extras]"
    if ! { [ -x "$VENV/bin/python" ] && _python_ok "$VENV/bin/python"; }; then
        [ -n "${PYTHON:-}" ] || find_python
        say "creating $VENV with $("$PYTHON" --version)"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    fi
    # One stamp per EXTRAS, so scripts/test and scripts/quickstart do not undo each other.
    stamp="$VENV/.dockyard-installed${extras:+-$extras}"
    want=$(cat "$REPO/pyproject.toml" "$CONSTRAINTS" <(echo "$spec") \
        <("$VENV/bin/python" --version) | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] \
        && "$VENV/bin/python" -c 'import dockyard' 2>/dev/null; then
        return
    fi
    say "pip install -e '$spec' -c constraints.txt"
    (cd "$REPO" && "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -c "$CONSTRAINTS" -e "$spec")
    echo "$want" >"$stamp"
    _warn_unpinned
}

# A package the venv holds at a version constraints.txt does not pin (a new dependency, or
# one added by hand) means the next machine may get another version: say so.
_warn_unpinned() {
    local unpinned
    unpinned=$(comm -23 \
        <("$VENV/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check | sort) \
        <(grep -v '^#' "$CONSTRAINTS" | sort))
    if [ -n "$unpinned" ]; then
        say "warning: installed but not pinned in constraints.txt (run scripts/lock to pin):"
        local lines=()
        mapfile -t lines <<<"$unpinned"
        printf '      %s\n' "${lines[@]}" >&2
    fi
}

# Starting no service while installing: Debian's nginx or HAProxy would otherwise take port 80.
_no_service_starts() {
    local guard=/usr/sbin/policy-rc.d made=""
    if [ ! -e "$guard" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$guard" >/dev/null
        as_root chmod 755 "$guard"
        made=1
    fi
    "$@"
    if [ -n "$made" ]; then as_root rm -f "$guard"; fi
}

# What apps are built, run and routed with: bubblewrap and setpriv for the sandbox, Node.js
# for the nodejs buildpack, nginx for static sites, HAProxy for the router, and Debian's
# Python with venv for Python apps.
ensure_platform() {
    ensure_debian git=git bwrap=bubblewrap setpriv=util-linux node=nodejs npm=npm
    # curl (with HTTP/2): scripts/quickstart's checks and the HTTPS tests.
    ensure_debian curl=curl
    if [ ! -x /usr/sbin/nginx ]; then
        _no_service_starts apt_install nginx-light
    fi
    # The router; dockyard server starts its own HAProxy, never Debian's service.
    if [ ! -x /usr/sbin/haproxy ]; then
        _no_service_starts apt_install haproxy
    fi
    if ! { [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; }; then
        apt_install python3 python3-venv
    fi
    # Add-ons: redis-server runs a Redis per add-on; psql and redis-cli serve pg:psql and
    # redis:cli. Debian's redis-server would start its own service on 6379: it must not.
    if ! command -v redis-server >/dev/null; then
        _no_service_starts apt_install redis-server
    fi
    ensure_debian psql=postgresql-client redis-cli=redis-tools
    # Add-ons without an operator's server: the platform runs its own PostgreSQL (initdb,
    # postgres) and MariaDB (mariadb-install-db, mariadbd); Debian's services must not start.
    if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
        _no_service_starts apt_install postgresql
    fi
    if ! command -v mariadb-install-db >/dev/null; then
        _no_service_starts apt_install mariadb-server
    fi
    # bench/router.py's load generator.
    ensure_debian wrk=wrk
}

ensure_heroku_cli() {
    ensure_debian node=nodejs npm=npm
    local have="" manifest="$HEROKU_CLI_DIR/node_modules/heroku/package.json"
    if [ -f "$manifest" ]; then
        have=$(node -e 'console.log(require(process.argv[1]).version)' "$manifest" 2>/dev/null || true)
    fi
    if [ "$have" != "$HEROKU_CLI_VERSION" ]; then
        say "npm install heroku@$HEROKU_CLI_VERSION into .cache/heroku-cli"
        mkdir -p "$HEROKU_CLI_DIR"
        [ -f "$HEROKU_CLI_DIR/package.json" ] || echo '{"private": true}' >"$HEROKU_CLI_DIR/package.json"
        (cd "$HEROKU_CLI_DIR" && npm install --no-audit --no-fund --loglevel=error \
            "heroku@$HEROKU_CLI_VERSION" >&2)
    fi
    export DOCKYARD_TEST_HEROKU_CLI="$HEROKU_CLI_DIR/node_modules/.bin/heroku"
    [ -x "$DOCKYARD_TEST_HEROKU_CLI" ] || die "the Heroku CLI did not install: $DOCKYARD_TEST_HEROKU_CLI is missing"
}

# The tests start their own pebble and pebble-challtestsrv, on free ports; the package
# runs no service.
ensure_pebble() {
    ensure_debian pebble=pebble pebble-challtestsrv=pebble
}

_postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432; }

ensure_postgres() {
    ensure_debian pg_isready=postgresql-client
    _postgres_up && return
    local clusters=() cluster
    shopt -s nullglob
    clusters=(/etc/postgresql/*/main)
    shopt -u nullglob
    if [ "${#clusters[@]}" -eq 0 ]; then
        # No server here at all: Debian's package makes a cluster "main" on install.
        apt_install postgresql
        shopt -s nullglob
        clusters=(/etc/postgresql/*/main)
        shopt -u nullglob
        [ "${#clusters[@]}" -gt 0 ] || die "postgresql installed but no cluster under /etc/postgresql"
        _trust_local_tcp "${clusters[0]}/pg_hba.conf"
    fi
    for cluster in "${clusters[@]}"; do
        cluster=${cluster%/main}
        say "starting PostgreSQL ${cluster##*/}"
        as_root pg_ctlcluster --skip-systemctl-redirect "${cluster##*/}" main start || true
    done
    _wait_for 30 _postgres_up || die "PostgreSQL does not answer at 127.0.0.1:5432 (see /var/log/postgresql/)"
}

# The docker runtime (docs/docker.md): Debian's Docker Engine, and debootstrap for the stack
# image. Without an init system to start it, dockerd runs in the background (pid file
# /run/docker.pid, log /var/log/dockerd.log). A daemon.json of our own, only when there is
# none: published ports bind to loopback unless told otherwise. Nothing is pulled.
DOCKERD_LOG=/var/log/dockerd.log

_docker_up() { as_root docker version >/dev/null 2>&1; }

ensure_docker() {
    if [ ! -x /usr/sbin/dockerd ] || [ ! -x /usr/sbin/debootstrap ]; then
        _no_service_starts apt_install docker.io debootstrap
    fi
    if [ ! -e /etc/docker/daemon.json ]; then
        as_root mkdir -p /etc/docker
        printf '{\n  "ip": "127.0.0.1",\n  "log-driver": "json-file"\n}\n' \
            | as_root tee /etc/docker/daemon.json >/dev/null
    fi
    _docker_up && return
    if [ -d /run/systemd/system ]; then
        say "starting docker (systemd)"
        as_root systemctl start docker || true
        _wait_for 60 _docker_up && return
    fi
    say "starting dockerd in the background (log: $DOCKERD_LOG)"
    as_root sh -c 'setsid /usr/sbin/dockerd --pidfile /run/docker.pid </dev/null >>"$1" 2>&1 &' \
        sh "$DOCKERD_LOG"
    _wait_for 60 _docker_up || die "dockerd did not start (see $DOCKERD_LOG)"
}

# The swarm runtime (docs/swarm.md): Debian's docker-registry, the registry a swarm's nodes
# pull release images from (not started: the manager runs it with a config of its own; the
# tests start their own). ip, nsenter and unshare make the tests' second node; socat is the
# server and client in their test image.
ensure_swarm() {
    if [ ! -x /usr/bin/docker-registry ]; then
        _no_service_starts apt_install docker-registry
    fi
    ensure_debian ip=iproute2 nsenter=util-linux unshare=util-linux socat=socat
}

# Tests connect as postgres@127.0.0.1 without a password, as on the CI machines; only
# done for a server this script installed itself.
_trust_local_tcp() {
    say "PostgreSQL: trust auth for user postgres over local TCP"
    as_root sed -i -e '1i host all postgres 127.0.0.1/32 trust' -e '1i host all postgres ::1/128 trust' "$1"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(basename "$(dirname "$(dirname "$1")")")" main reload 2>/dev/null || true
}

# _wait_for SECONDS COMMAND...: poll COMMAND until it succeeds or the deadline passes.
_wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
