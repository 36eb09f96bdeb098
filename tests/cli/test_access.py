"""``access``, ``access:add``, ``access:remove``: a second user gains and loses an app."""

from __future__ import annotations

import json
import re

from cli.runner import Users


def test_add_and_remove_a_collaborator(users: Users) -> None:
    alice, bob = users.new(), users.new()
    app = alice.create_app()
    assert "Couldn't find that app" in bob.fails("apps:info", "-a", app)

    result = alice.run("access:add", bob.email, "-a", app)
    assert f"Adding {bob.email} access to the app {app}... done" in result.stderr

    shown = alice.out("access", "-a", app)
    assert shown.startswith(f"=== {app} Access List\n\n")
    assert re.search(rf"^{re.escape(alice.email)}\s+owner$", shown, re.MULTILINE)
    assert re.search(rf"^{re.escape(bob.email)}\s+collaborator$", shown, re.MULTILINE)
    listed = json.loads(alice.out("access", "--json", "-a", app))
    assert [c["user"]["email"] for c in listed] == [bob.email]

    # bob now sees and works on the app, but cannot share it further.
    assert app in [a["name"] for a in json.loads(bob.out("apps", "--json"))]
    bob.run("config:set", "BY=bob", "-a", app)
    carol = users.new(logged_in=False)
    error = bob.fails("access:add", carol.email, "-a", app)
    assert f"only the owner of {app} ({alice.email}) can add collaborators" in error

    result = alice.run("access:remove", bob.email, "-a", app)
    assert f"Removing {bob.email} access from the app {app}... done" in result.stderr
    assert json.loads(bob.out("apps", "--json")) == []
    assert "Couldn't find that app" in bob.fails("config", "-a", app)


def test_access_failures(users: Users) -> None:
    alice = users.new()
    app = alice.create_app()
    error = alice.fails("access:add", "nobody@example.com", "-a", app)
    assert "no user has the email nobody@example.com" in error
    assert f"owns {app} already" in alice.fails("access:add", alice.email, "-a", app)
    error = alice.fails("access:remove", "nobody@example.com", "-a", app)
    assert f"nobody@example.com is not a collaborator on {app}" in error
