"""Reading a Dockerfile app: its base images and the image's command (no Docker needed)."""

from __future__ import annotations

from pathlib import Path

from dockyard.build.dockerfile import base_images, wants_dockerfile, web_command


def test_base_images_leave_out_stages_and_scratch() -> None:
    dockerfile = (
        "# syntax comment\n"
        "ARG VERSION=1\n"
        "FROM --platform=linux/amd64 dockyard/stack:24 AS build\n"
        "RUN make \\\n"
        "    all\n"
        "from build as test\n"
        "FROM scratch\n"
        "FROM registry.example:5000/base:2\n"
        "COPY --from=build /out /out\n"
        "FROM dockyard/stack:24\n"
    )
    assert base_images(dockerfile) == ["dockyard/stack:24", "registry.example:5000/base:2"]


def test_the_image_command_is_entrypoint_and_cmd() -> None:
    image = {"Config": {"Entrypoint": ["/bin/tini", "--"], "Cmd": ["python3", "a b.py"]}}
    assert web_command(image) == "/bin/tini -- python3 'a b.py'"
    assert web_command({"Config": {"Entrypoint": None, "Cmd": None}}) is None


def test_a_dockerfile_at_the_root_and_no_buildpacks(tmp_path: Path) -> None:
    assert not wants_dockerfile(tmp_path, [])
    (tmp_path / "Dockerfile").write_text("FROM dockyard/stack:24\n")
    assert wants_dockerfile(tmp_path, [])
    assert not wants_dockerfile(tmp_path, ["builtin:python"])
