"""A dyno's supervisor: holds its output pipes, writes its log and records its exit.

Run as ``python -m dockyard.runtime._supervisor DYNO_DIR`` in its own session, so it
outlives the control plane: a restarted control plane finds the dyno still running, its
output still logged, and its exit in ``exit.json``. It forks away from its parent, reads
(and deletes, since it holds config vars) ``launch.json``, starts the sandbox, prints its
pid and its own on stdout once it runs, and then writes each stdout/stderr line as
``{"time", "stream", "line"}`` JSON to ``log``. When the sandbox exits it removes the
dyno's writable layer and writes ``exit.json`` atomically.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

MAX_LINE = 64 * 1024


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


def main(directory: Path) -> int:
    # Detach: the control plane never has to reap us, and we outlive it.
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    for number in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
        signal.signal(number, signal.SIG_IGN)
    launch_path = directory / "launch.json"
    launch = json.loads(launch_path.read_text())
    launch_path.unlink()
    log = os.open(directory / "log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        process = subprocess.Popen(
            launch["argv"],
            env=launch["env"],
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
        )
    except OSError as exc:
        print(json.dumps({"error": f"could not start the dyno's sandbox: {exc}"}), flush=True)
        return 1
    finally:
        os.close(out_w)
        os.close(err_w)
    print(json.dumps({"pid": process.pid, "supervisor": os.getpid()}), flush=True)
    # The control plane may go away; nothing more goes to its pipe.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    _pump(log, {out_r: "stdout", err_r: "stderr"})
    code = process.wait()
    status = code if code >= 0 else 128 - code
    for path in launch.get("cleanup", []):
        shutil.rmtree(path, ignore_errors=True)
    temp = directory / "exit.json.tmp"
    temp.write_text(json.dumps({"status": status, "at": time.time()}))
    temp.rename(directory / "exit.json")
    os.close(log)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
