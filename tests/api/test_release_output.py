"""A release's ``output_stream_url``: set when it has release phase output; a signed URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from api.checks import error, ok
from conftest import Api
from dockyard.release_phase import RELEASE, output_key


def test_release_output_is_served_from_a_signed_url(api: Api, tmp_path: Path) -> None:
    owner = api.user("owner@example.com")
    ok(owner.client.post("/apps", json={"name": "web"}), 201)
    ok(owner.client.patch("/apps/web/config-vars", json={"A": "1"}))
    v2: dict[str, Any] = ok(owner.client.get("/apps/web/releases/2"))
    assert v2["output_stream_url"] is None, "no release command, no output"

    # What a release phase keeps (this API runs no dynos, so it is put there by hand).
    kept = tmp_path / "output.log"
    kept.write_text("migrating\ndone\n")
    api.app.state.builds.blobs.put(output_key(RELEASE, v2["id"]), kept)
    url = ok(owner.client.get("/apps/web/releases/v2"))["output_stream_url"]
    assert url.startswith("http://testserver/streams/releases/")
    assert [r["output_stream_url"] for r in ok(owner.client.get("/apps/web/releases"))] == [
        None,
        url,
    ]

    streamed = api.anonymous.get(url.removeprefix("http://testserver"))
    assert streamed.status_code == 200
    assert streamed.text == "migrating\ndone\n"
    forged = url.rsplit("=", 1)[0] + "=0"
    error(api.anonymous.get(forged.removeprefix("http://testserver")), 404, "not_found")
