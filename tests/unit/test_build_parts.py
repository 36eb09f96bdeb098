"""Unit tests of the build's pure parts: branches, Procfile, app.json, .slugignore, unpacking."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest

from dockyard.build import appjson, procfile, slug
from dockyard.build.pipeline import BuildFailed, unpack
from dockyard.receive.branches import ZERO, Rejected, Update, choose

SHA = "a" * 40


@pytest.mark.parametrize(
    ("refs", "configured", "deployed"),
    [
        (["refs/heads/main"], None, "refs/heads/main"),
        (["refs/heads/master"], None, "refs/heads/master"),
        (["refs/heads/production"], "production", "refs/heads/production"),
    ],
)
def test_the_deploy_branch_is_chosen(
    refs: list[str], configured: str | None, deployed: str
) -> None:
    assert choose([Update(ZERO, SHA, ref) for ref in refs], configured).ref == deployed


@pytest.mark.parametrize(
    ("refs", "configured", "advice"),
    [
        (["refs/heads/feature"], None, "git push dockyard feature:main"),
        (["refs/heads/main", "refs/heads/feature"], None, "git push dockyard feature:main"),
        (["refs/heads/main"], "production", "git push dockyard main:production"),
        (["refs/tags/v1"], None, "git push dockyard refs/tags/v1:main"),
    ],
)
def test_other_refs_are_refused_with_advice(
    refs: list[str], configured: str | None, advice: str
) -> None:
    with pytest.raises(Rejected, match="non-deploy branch") as caught:
        choose([Update(ZERO, SHA, ref) for ref in refs], configured)
    assert advice in str(caught.value)


def test_deleting_the_deploy_branch_is_refused() -> None:
    with pytest.raises(Rejected, match="Deleting the deploy branch main"):
        choose([Update(SHA, ZERO, "refs/heads/main")], None)


def test_procfile_types_in_order_with_comments() -> None:
    text = (
        "# processes\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n"
        "\nworker:python worker.py\nrelease: ./migrate\n"
    )
    assert procfile.parse(text) == {
        "web": "gunicorn app:app --bind 0.0.0.0:$PORT",
        "worker": "python worker.py",
        "release": "./migrate",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("web: a\nweb: b\n", "line 2: process type web is declared twice"),
        ("web b: a\n", "line 1: process type 'web b' is invalid"),
        ("web:\n", "line 1: process type web has no command"),
        ("just words\n", "line 1 is not '<type>: <command>'"),
        ("x" * 70_000, "over 64 kB"),
    ],
)
def test_malformed_procfiles_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(procfile.ProcfileError, match=message.replace("'", ".").replace("(", ".")):
        procfile.parse(text)


def test_app_json_defaults_generated_secrets_and_required() -> None:
    manifest = appjson.parse(
        '{"env": {"A": "1", "S": {"generator": "secret"}, "OPT": {"required": false},'
        ' "NEED": {"required": true}}, "formation": {"web": {"quantity": 2}},'
        ' "buildpacks": [{"url": "https://example.com/bp.git"}]}'
    )
    assert manifest.buildpacks == ("https://example.com/bp.git",)
    assert manifest.formation == {"web": {"quantity": 2}}
    with pytest.raises(appjson.AppJsonError, match="not set: NEED"):
        manifest.config_defaults({})
    added = manifest.config_defaults({"NEED": "x", "A": "kept"})
    assert set(added) == {"S"}
    assert len(added["S"]) == 64


def test_app_json_addons_take_plans_attachment_names_and_options() -> None:
    manifest = appjson.parse(
        '{"addons": ["postgres", {"plan": "redis:standard", "as": "CACHE_2",'
        ' "options": {"version": "7", "fast": true, "size": 2}}, {"plan": "s3"}]}'
    )
    assert manifest.addons == (
        appjson.AddonSpec("postgres"),
        appjson.AddonSpec(
            "redis:standard", "CACHE_2", {"version": "7", "fast": "true", "size": "2"}
        ),
        appjson.AddonSpec("s3"),
    )
    assert [str(spec) for spec in manifest.addons] == [
        "postgres",
        "redis:standard as CACHE_2",
        "s3",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "must hold a JSON object"),
        ('{"env": {"bad name": "x"}}', "not a valid config var name"),
        ('{"env": {"A": {"generator": "uuid"}}}', "generator must be"),
        ('{"formation": {"web": {"quantity": -1}}}', "quantity must be"),
        ('{"buildpacks": [{"link": "x"}]}', "must be an object with a"),
        ('{"addons": "postgres"}', "addons must be a list"),
        ('{"addons": [7]}', r"addons\[0\] must be a plan name"),
        ('{"addons": [{"as": "DB"}]}', r'addons\[0\] must have a "plan"'),
        ('{"addons": ["redis", " "]}', r"addons\[1\]: the plan is empty"),
        ('{"addons": [{"plan": "redis", "az": "CACHE"}]}', "has 'az', which is not an add-on key"),
        ('{"addons": [{"plan": "redis", "as": "cache"}]}', r'"as" is "cache": .* uppercase'),
        ('{"addons": [{"plan": "redis", "as": "1CACHE"}]}', r'"as" is "1CACHE"'),
        ('{"addons": [{"plan": "redis", "as": "CACHE-1"}]}', r'"as" is "CACHE-1"'),
        ('{"addons": [{"plan": "redis", "as": 5}]}', r'"as" is 5'),
        (
            '{"addons": [{"plan": "redis", "as": "C"}, {"plan": "postgres", "as": "C"}]}',
            r"addons\[1\]: C is the attachment name of an earlier add-on too",
        ),
        ('{"addons": [{"plan": "redis", "options": [1]}]}', '"options" must be an object'),
        ('{"addons": [{"plan": "redis", "options": {"Bad Key": 1}}]}', "'Bad Key' is not a valid"),
        ('{"addons": [{"plan": "redis", "options": {"v": {}}}]}', "option 'v' must be a string"),
    ],
)
def test_bad_app_json_is_explained(text: str, message: str) -> None:
    with pytest.raises(appjson.AppJsonError, match=message):
        appjson.parse(text)


@pytest.mark.parametrize(
    ("path", "is_dir", "expected"),
    [
        ("logo.psd", False, True),
        ("art/logo.psd", False, True),
        ("docs", True, True),
        ("src/docs", True, False),
        ("tmp", True, True),
        ("tmp", False, False),
        ("app.py", False, False),
        (".git", True, True),
    ],
)
def test_slugignore_patterns(path: str, is_dir: bool, expected: bool) -> None:
    assert slug.ignored(path, is_dir, [".git", "*.psd", "/docs", "tmp/"]) is expected


def _tarball(tmp_path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    path = tmp_path / "source.tar"
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


@pytest.mark.parametrize(
    "member",
    [
        _file("../escape"),
        _file("/etc/cron.d/evil"),
        _link("passwd", "/etc/passwd"),
        _link("up", "../../x"),
    ],
)
def test_unpack_refuses_paths_out_of_the_app(tmp_path: Path, member: tarfile.TarInfo) -> None:
    source = _tarball(tmp_path, (_file("Procfile"), b"web: x\n"), (member, b""))
    with pytest.raises(BuildFailed, match="points outside the app"):
        unpack(source, tmp_path / "app", 10**9)


def test_unpack_refuses_an_empty_source_and_oversized_ones(tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="the source is empty"):
        unpack(_tarball(tmp_path), tmp_path / "empty", 10**9)
    big = _tarball(tmp_path, (_file("big"), b"x" * 2000))
    with pytest.raises(BuildFailed, match="unpacked"):
        unpack(big, tmp_path / "big", 1000)


def test_unpack_refuses_what_is_not_a_tarball(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tarball at all")
    with pytest.raises(BuildFailed, match="could not be read"):
        unpack(junk, tmp_path / "app", 10**9)


def test_app_json_build_args_for_dockerfile_apps() -> None:
    manifest = appjson.parse('{"build": {"args": {"NODE_ENV": "production", "_V2": ""}}}')
    assert manifest.build_args == {"NODE_ENV": "production", "_V2": ""}
    assert appjson.parse("{}").build_args == {}
    for text, message in (
        ('{"build": []}', '"build" must be an object'),
        ('{"build": {"args": ["A"]}}', '"build" must be an object'),
        ('{"build": {"arg": {}}}', "unknown keys ['arg']"),
        ('{"build": {"args": {"1X": "y"}}}', "build arg '1X' is not a valid name"),
        ('{"build": {"args": {"X": 1}}}', "build arg X must be a string"),
    ):
        with pytest.raises(appjson.AppJsonError, match=re.escape(message)):
            appjson.parse(text)
