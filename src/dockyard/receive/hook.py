"""The pre-receive hook: ``python -m dockyard.receive.hook``, run by ``git-receive-pack``.

It reads the pushed refs, picks the deploy branch, streams ``git archive`` of the commit to
the server's push URL (``DOCKYARD_PUSH_URL``, one-time) and prints the build's output,
which git shows the pusher as ``remote:`` lines. It exits non-zero, rejecting the push,
when the build fails. Standard library only: it starts on every push.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from urllib.parse import urlsplit

from dockyard.receive.branches import Rejected, choose, parse

STATUS_PREFIX = "\x00dockyard-status "


def reject(message: str) -> int:
    print(f" !     {message}", flush=True)
    print(" !     Push rejected", flush=True)
    return 1


def main() -> int:
    updates = parse(sys.stdin.read().splitlines())
    try:
        update = choose(updates, os.environ.get("DOCKYARD_DEPLOY_BRANCH") or None)
    except Rejected as exc:
        return reject(str(exc))
    url = urlsplit(os.environ["DOCKYARD_PUSH_URL"])
    archive = subprocess.Popen(
        ["git", "archive", "--format=tar", update.new], stdout=subprocess.PIPE
    )
    assert archive.stdout is not None
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=3600)
    try:
        connection.putrequest("POST", f"{url.path}?{url.query}")
        connection.putheader("Content-Type", "application/x-tar")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.putheader("X-Dockyard-Ref", update.ref)
        connection.putheader("X-Dockyard-Old", update.old)
        connection.putheader("X-Dockyard-New", update.new)
        connection.endheaders()
        while chunk := archive.stdout.read(256 * 1024):
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        connection.send(b"0\r\n\r\n")
        if archive.wait() != 0:
            return reject("git archive could not read the pushed commit")
        response = connection.getresponse()
        succeeded = False
        for raw in response:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith(STATUS_PREFIX):
                succeeded = line.removeprefix(STATUS_PREFIX) == "ok"
                continue
            print(line, flush=True)
        return 0 if succeeded else 1
    except OSError as exc:
        return reject(f"the build service could not be reached: {exc}")
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
