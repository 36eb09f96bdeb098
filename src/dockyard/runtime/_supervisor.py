"""A dyno's supervisor: holds its output pipes, writes its log and records its exit.

Run as ``python -m dockyard.runtime._supervisor DYNO_DIR`` in its own session, so it
outlives the control plane: a restarted control plane finds the dyno still running, its
output still logged, and its exit in ``exit.json``. It forks away from its parent, reads
(and deletes, since it holds config vars) ``launch.json``, starts the sandbox, prints its
pid and its own on stdout once it runs, and then writes each stdout/stderr line as
``{"time", "stream", "line"}`` JSON to ``log``. The sandbox starts inside the dyno's cgroup
(:mod:`dockyard.runtime.cgroups`) when it has one. When the sandbox exits it counts the
kernel's OOM kills there, removes the cgroup, and writes ``exit.json`` atomically. (The
dyno's writable layer is a tmpfs in the sandbox: it goes with it.) An attached dyno
(``dockyard run``) has a terminal or pipes to its one client instead of a log
(:mod:`dockyard.runtime._attach`).
"""

from __future__ import annotations

import functools
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from dockyard.runtime import _attach, cgroups

MAX_LINE = 64 * 1024
_IGNORED = (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE)


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _write_line(log: int, stream: str, raw: bytes) -> None:
    line = raw.decode("utf-8", "replace").rstrip("\r")
    record = json.dumps({"time": _stamp(), "stream": stream, "line": line})
    os.write(log, (record + "\n").encode())


def _pump(log: int, pipes: dict[int, str]) -> None:
    """Copy lines from the pipes to the log until every writer has closed them."""
    selector = selectors.DefaultSelector()
    pending = {fd: b"" for fd in pipes}
    for fd in pipes:
        selector.register(fd, selectors.EVENT_READ)
    while pending:
        for key, _ in selector.select():
            fd = int(key.fd)
            chunk = os.read(fd, 65536)
            if not chunk:
                if pending[fd]:
                    _write_line(log, pipes[fd], pending[fd])
                selector.unregister(fd)
                os.close(fd)
                del pending[fd]
                continue
            buffer = pending[fd] + chunk
            *lines, rest = buffer.split(b"\n")
            # A line without an end is cut so that one dyno cannot grow this process.
            while len(rest) > MAX_LINE:
                lines.append(rest[:MAX_LINE])
                rest = rest[MAX_LINE:]
            for line in lines:
                _write_line(log, pipes[fd], line)
            pending[fd] = rest
    selector.close()


def _in_child(group: cgroups.Group | None) -> None:
    """Between fork and exec: the signals we ignore are the dyno's to handle, and its cgroup.

    An ignored signal stays ignored across exec, and a shell cannot trap one it started with
    ignored: Ctrl-C on an attached dyno's terminal would not reach it.
    """
    for number in _IGNORED:
        signal.signal(number, signal.SIG_DFL)
    if group is not None:
        group.join()


def main(directory: Path) -> int:
    # Detach: the control plane never has to reap us, and we outlive it.
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    for number in _IGNORED:
        signal.signal(number, signal.SIG_IGN)
    launch_path = directory / "launch.json"
    launch = json.loads(launch_path.read_text())
    launch_path.unlink()
    log = os.open(directory / "log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        # An attached dyno (`dockyard run`): its terminal or pipes, and its client's socket.
        attached = (
            _attach.Terminal.open(directory, launch["attach"]) if launch.get("attach") else None
        )
    except OSError as exc:
        print(json.dumps({"error": f"could not make the dyno's terminal: {exc}"}), flush=True)
        return 1
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    stdio = (subprocess.DEVNULL, out_w, err_w) if attached is None else attached.child
    group = cgroups.Group.from_json(launch["cgroup"]) if launch.get("cgroup") else None
    try:
        process = subprocess.Popen(
            launch["argv"] if attached is None else attached.sandbox_argv(launch["argv"]),
            env=launch["env"],
            stdin=stdio[0],
            stdout=stdio[1],
            stderr=stdio[2],
            # In the dyno's cgroup between fork and exec: nothing of it runs outside.
            preexec_fn=functools.partial(_in_child, group),  # noqa: PLW1509 - no threads here
        )
    except (OSError, subprocess.SubprocessError) as exc:
        print(json.dumps({"error": f"could not start the dyno's sandbox: {exc}"}), flush=True)
        return 1
    finally:
        os.close(out_w)
        os.close(err_w)
        if attached is not None:
            attached.close_child()
    print(json.dumps({"pid": process.pid, "supervisor": os.getpid()}), flush=True)
    # The control plane may go away; nothing more goes to its pipe.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    if attached is None:
        _pump(log, {out_r: "stdout", err_r: "stderr"})
    else:
        os.close(out_r)
        os.close(err_r)
        _attach.serve(attached, process)
    code = process.wait()
    status = code if code >= 0 else 128 - code
    oom_kills = 0
    if group is not None:
        oom_kills = group.oom_kills()
        try:
            group.remove()
        except OSError as exc:
            print(f"could not remove the dyno's cgroup: {exc}", file=sys.stderr, flush=True)
    temp = directory / "exit.json.tmp"
    temp.write_text(json.dumps({"status": status, "at": time.time(), "oom_kills": oom_kills}))
    temp.rename(directory / "exit.json")
    os.close(log)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
