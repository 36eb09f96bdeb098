"""git push → build → slug → release, end to end with the real git client and server."""

from __future__ import annotations

import concurrent.futures
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import APPS, Server, git, git_url, make_repo
from e2e.deploy import Deployer, deployer_for

BUILDPACKS = Path(__file__).parent.parent / "buildpacks"


@pytest.fixture(scope="module")
def deployer(server: Server) -> Iterator[Deployer]:
    with deployer_for(server, "pusher@example.com") as deployer:
        yield deployer


def commit(repo: Path, message: str, **files: str) -> str:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git("add", "--all", cwd=repo)
    git("commit", "--quiet", "--allow-empty", "--message", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).stdout.strip()


def test_procfile_app_deploys_with_heroku_output(deployer: Deployer, tmp_path: Path) -> None:
    app = deployer.create("shell-app")
    repo = make_repo(APPS / "procfile-shell", tmp_path / "repo")
    sha = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    lines = pushed.lines
    expected = [
        "-----> Building on the dockyard-24 stack",
        "-----> Procfile app detected",
        "-----> Discovering process types",
        "       Procfile declares types -> web, worker",
        "-----> Compressing...",
        "-----> Launching...",
        "       Released v2",
    ]
    positions = [next(i for i, line in enumerate(lines) if line == want) for want in expected]
    assert positions == sorted(positions), lines
    assert any(re.fullmatch(r"       Done: \d+(\.\d)?[BKMG]", line) for line in lines), lines
    assert f"       http://{app}.localhost:8080/ deployed to Dockyard" in lines or any(
        f"http://{app}.localhost" in line and "deployed" in line for line in lines
    )

    (build,) = deployer.builds(app)
    assert build["status"] == "succeeded"
    assert build["source_blob"]["version"] == sha
    release = deployer.current(app)
    assert release["version"] == 2
    assert release["description"] == f"Deploy {sha[:7]}"
    assert release["slug"]["id"] == build["slug"]["id"]
    assert build["release"]["id"] == release["id"]

    files = deployer.slug_members(release)
    assert {"./Procfile", "./bin/serve", "./bin/work"} <= set(files)
    assert files["./bin/serve"].mode & 0o111
    assert "./logo.psd" not in files, ".slugignore patterns are left out"
    assert not any(name.startswith("./notes") for name in files)
    assert not any(name.startswith("./.git/") for name in files)

    replay = httpx.get(build["output_stream_url"], timeout=30)
    assert replay.status_code == 200
    assert "Procfile declares types -> web, worker" in replay.text


def test_custom_buildpack_from_local_path(deployer: Deployer, tmp_path: Path) -> None:
    app = deployer.create("custom-bp")
    reply = deployer.client.put(
        f"/apps/{app}/buildpack-installations",
        json={"updates": [{"buildpack": str(BUILDPACKS / "hello")}]},
    )
    assert reply.status_code == 200, reply.text
    assert (
        deployer.client.patch(f"/apps/{app}/config-vars", json={"GREETING": "ahoy"}).status_code
        == 200
    )
    repo = make_repo(APPS / "custom-buildpack", tmp_path / "repo")
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    lines = pushed.lines
    assert f"-----> Using buildpack: {BUILDPACKS / 'hello'}" in lines
    assert "-----> Hello app detected" in lines
    assert "       build dir is /app" in lines
    assert "       cache has seen 1 builds" in lines
    assert "       GREETING is unset in the environment" in lines, "config reaches ENV_DIR only"
    assert "       ENV_DIR GREETING=ahoy" in lines
    assert "       Default types for buildpack -> web" in lines
    release = deployer.current(app)
    assert release["version"] == 3

    commit(repo, "again")
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    assert "       cache has seen 2 builds" in pushed.lines, "the cache persists between builds"
    if os.geteuid() == 0:
        assert "-----> Hello app detected" in pushed.lines


def test_failing_buildpack_rejects_push_and_keeps_release(
    deployer: Deployer, tmp_path: Path
) -> None:
    app = deployer.create("fails-bp")
    repo = make_repo(APPS / "procfile-shell", tmp_path / "repo")
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    before = deployer.current(app)

    deployer.client.put(
        f"/apps/{app}/buildpack-installations",
        json={"updates": [{"buildpack": str(BUILDPACKS / "failing")}]},
    )
    commit(repo, "break it", **{"NEWS": "broken"})
    pushed = deployer.push(repo, app)
    assert pushed.status != 0
    lines = pushed.lines
    assert "-----> About to fail" in lines
    assert "       something went wrong" in lines
    assert any("failed to compile the app (exit status 3)" in line for line in lines)
    assert "pre-receive hook declined" in pushed.output
    assert deployer.current(app)["id"] == before["id"], "the running release is untouched"
    builds = deployer.builds(app)
    assert sorted(b["status"] for b in builds) == ["failed", "succeeded"]
    assert git("ls-remote", git_url(deployer.server, deployer.token, app), cwd=repo).stdout.split()[
        0
    ] != (git("rev-parse", "HEAD", cwd=repo).stdout.strip()), (
        "the rejected commit is not on the remote branch"
    )


def test_nothing_detectable_fails_with_advice(deployer: Deployer, tmp_path: Path) -> None:
    app = deployer.create("no-detect")
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=repo)
    commit(repo, "just a readme", **{"README.md": "# nothing to run\n"})
    pushed = deployer.push(repo, app)
    assert pushed.status != 0
    assert "No default language could be detected for this app" in pushed.output
    assert deployer.current(app)["version"] == 1


def test_app_json_required_variable_and_generated_secret(
    deployer: Deployer, tmp_path: Path
) -> None:
    app = deployer.create("needs-config")
    repo = make_repo(APPS / "app-json-required", tmp_path / "repo")
    pushed = deployer.push(repo, app)
    assert pushed.status != 0
    assert "app.json requires config vars that are not set: API_TOKEN" in pushed.output
    assert deployer.client.get(f"/apps/{app}/config-vars").json() == {}

    deployer.client.patch(f"/apps/{app}/config-vars", json={"API_TOKEN": "t0ken"})
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    config = deployer.client.get(f"/apps/{app}/config-vars").json()
    assert config["API_TOKEN"] == "t0ken"
    assert config["WELCOME"] == "hi"
    assert re.fullmatch(r"[0-9a-f]{64}", config["SECRET_KEY"])
    release = deployer.current(app)
    assert (
        deployer.client.get(f"/apps/{app}/releases/{release['version']}/config-vars").json()
        == config
    )


@pytest.mark.parametrize(
    ("procfile", "message"),
    [
        ("web: ./run.sh\nweb: ./other.sh\n", "process type web is declared twice"),
        ("we b: ./run.sh\n", "process type 'we b' is invalid"),
        ("just a command\n", "is not '<type>: <command>'"),
    ],
)
def test_malformed_procfile_is_rejected(
    deployer: Deployer, tmp_path: Path, procfile: str, message: str
) -> None:
    app = deployer.create(f"bad-procfile-{abs(hash(procfile)) % 10000}")
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=repo)
    commit(repo, "bad procfile", Procfile=procfile, **{"run.sh": "#!/bin/sh\n"})
    pushed = deployer.push(repo, app)
    assert pushed.status != 0
    assert message in pushed.output
    assert deployer.current(app)["version"] == 1


def test_symlink_out_of_the_repo_is_rejected(deployer: Deployer, tmp_path: Path) -> None:
    app = deployer.create("escaping-link")
    repo = make_repo(APPS / "procfile-shell", tmp_path / "repo")
    (repo / "passwd").symlink_to("/etc/passwd")
    git("add", "passwd", cwd=repo)
    git("commit", "--quiet", "--message", "link out", cwd=repo)
    pushed = deployer.push(repo, app)
    assert pushed.status != 0
    assert "points outside the app" in pushed.output
    assert deployer.current(app)["version"] == 1


def test_only_the_deploy_branch_builds(deployer: Deployer, tmp_path: Path) -> None:
    app = deployer.create("branches")
    repo = make_repo(APPS / "procfile-shell", tmp_path / "repo")
    git("checkout", "--quiet", "-b", "feature", cwd=repo)
    pushed = deployer.push(repo, app, "feature")
    assert pushed.status != 0
    assert "Pushed to non-deploy branch feature" in pushed.output
    assert "git push dockyard feature:main" in pushed.output
    assert deployer.current(app)["version"] == 1

    pushed = deployer.push(repo, app, "feature:main")
    assert pushed.status == 0, pushed.output
    assert deployer.current(app)["version"] == 2


def test_master_deploys_when_that_is_what_is_pushed(deployer: Deployer, tmp_path: Path) -> None:
    app = deployer.create("on-master")
    repo = make_repo(APPS / "procfile-shell", tmp_path / "repo")
    git("branch", "--move", "main", "master", cwd=repo)
    pushed = deployer.push(repo, app, "master")
    assert pushed.status == 0, pushed.output
    assert "Released v2" in pushed.output


def test_force_push_of_an_older_commit_deploys_it(deployer: Deployer, tmp_path: Path) -> None:
    app = deployer.create("force-older")
    repo = make_repo(APPS / "procfile-shell", tmp_path / "repo")
    first = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    assert deployer.push(repo, app).status == 0
    second = commit(repo, "second", **{"VERSION": "2"})
    assert deployer.push(repo, app).status == 0
    assert deployer.current(app)["description"] == f"Deploy {second[:7]}"

    git("reset", "--quiet", "--hard", first, cwd=repo)
    pushed = deployer.push(repo, app, "--force", "main")
    assert pushed.status == 0, pushed.output
    current = deployer.current(app)
    assert current["description"] == f"Deploy {first[:7]}"
    assert current["version"] == 4


def test_concurrent_pushes_serialize_and_history_stays_correct(
    deployer: Deployer, tmp_path: Path
) -> None:
    app = deployer.create("concurrent")
    base = make_repo(APPS / "procfile-shell", tmp_path / "base")
    assert deployer.push(base, app).status == 0
    clones = []
    for name in ("one", "two"):
        clone = tmp_path / name
        shutil.copytree(base, clone)
        commit(clone, f"change {name}", **{f"{name}.txt": name})
        clones.append(clone)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda repo: deployer.push(repo, app), clones))
    outputs = [pushed.output for pushed in results]
    succeeded = [pushed.status == 0 for pushed in results]
    assert any(succeeded), outputs
    for ok, output in zip(succeeded, outputs, strict=True):
        if not ok:
            # The one that waited finds main moved under it and says what to do.
            assert "was updated by another push while this one waited" in output, output
    versions = sorted(r["version"] for r in deployer.releases(app))
    assert versions == list(range(1, 2 + 1 + sum(succeeded))), "versions are unique and contiguous"
    assert sum(r["current"] for r in deployer.releases(app)) == 1
    remote_head = git(
        "ls-remote", git_url(deployer.server, deployer.token, app), "main", cwd=base
    ).stdout.split()[0]
    assert deployer.current(app)["description"] == f"Deploy {remote_head[:7]}"


def test_build_from_uploaded_tarball(deployer: Deployer, tmp_path: Path) -> None:
    app = deployer.create("from-tarball")
    source = deployer.client.post("/sources").json()["source_blob"]
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        tar.add(APPS / "procfile-shell", arcname=".")
    upload = httpx.put(source["put_url"], content=archive.getvalue(), timeout=30)
    assert upload.status_code == 200, upload.text

    created = deployer.client.post(
        f"/apps/{app}/builds", json={"source_blob": {"url": source["get_url"], "version": "v1.0"}}
    )
    assert created.status_code == 201, created.text
    build = created.json()
    assert build["status"] in ("pending", "succeeded")
    with httpx.stream("GET", build["output_stream_url"], timeout=120) as stream:
        output = "".join(stream.iter_text())
    assert "Released v2" in output
    finished = deployer.client.get(f"/apps/{app}/builds/{build['id']}").json()
    assert finished["status"] == "succeeded"
    assert finished["source_blob"]["version"] == "v1.0"
    assert deployer.current(app)["description"] == "Deploy v1.0"


def test_tarball_with_parent_paths_is_rejected(deployer: Deployer) -> None:
    app = deployer.create("evil-tarball")
    source = deployer.client.post("/sources").json()["source_blob"]
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = b"web: ./x\n"
        info = tarfile.TarInfo("../../Procfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    httpx.put(source["put_url"], content=archive.getvalue(), timeout=30).raise_for_status()
    build = deployer.client.post(
        f"/apps/{app}/builds", json={"source_blob": {"url": source["get_url"]}}
    ).json()
    with httpx.stream("GET", build["output_stream_url"], timeout=120) as stream:
        output = "".join(stream.iter_text())
    assert "points outside the app" in output
    assert deployer.client.get(f"/apps/{app}/builds/{build['id']}").json()["status"] == "failed"
    assert deployer.current(app)["version"] == 1


def test_push_needs_credentials_and_access(deployer: Deployer, tmp_path: Path) -> None:
    app = deployer.create("private-repo")
    repo = make_repo(APPS / "procfile-shell", tmp_path / "repo")
    anonymous = git("push", f"{deployer.server.url}/{app}.git", "main", cwd=repo, check=False)
    assert anonymous.returncode != 0
    # git asks for credentials after the 401 challenge; with prompts off it gives up.
    assert (
        "could not read Username" in anonymous.stdout or "Authentication failed" in anonymous.stdout
    )
    stranger = deployer.server.create_user("stranger@example.com")
    denied = git("push", git_url(deployer.server, stranger, app), "main", cwd=repo, check=False)
    assert denied.returncode != 0
    assert "not found" in denied.stdout.lower()
    assert deployer.current(app)["version"] == 1


def test_a_configured_deploy_branch_is_the_one_that_deploys(
    deployer: Deployer, tmp_path: Path
) -> None:
    app = deployer.create("prod-branch")
    env = {
        **os.environ,
        "DOCKYARD_API_URL": deployer.server.url,
        "DOCKYARD_API_KEY": deployer.token,
        "HOME": str(tmp_path),
    }
    cli = [sys.executable, "-m", "dockyard", "git:deploy-branch", "-a", app]
    set_branch = subprocess.run([*cli, "production"], env=env, capture_output=True, text=True)
    assert set_branch.returncode == 0, set_branch.stderr
    shown = subprocess.run(cli, env=env, capture_output=True, text=True)
    assert shown.stdout.strip() == "production"
    bad = subprocess.run([*cli, "bad..name"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0
    assert "is not a branch name" in bad.stderr

    repo = make_repo(APPS / "procfile-shell", tmp_path / "repo")
    pushed = deployer.push(repo, app, "main")
    assert pushed.status != 0
    assert "git push dockyard main:production" in pushed.output
    pushed = deployer.push(repo, app, "main:production")
    assert pushed.status == 0, pushed.output
    assert deployer.current(app)["version"] == 2

    reset = subprocess.run([*cli, "--reset"], env=env, capture_output=True, text=True)
    assert reset.returncode == 0, reset.stderr
    assert deployer.client.get(f"/apps/{app}").json()["deploy_branch"] is None


def test_a_buildpack_from_a_git_repository(deployer: Deployer, tmp_path: Path) -> None:
    source = tmp_path / "hello-buildpack"
    shutil.copytree(BUILDPACKS / "hello", source)
    git("init", "--quiet", "--initial-branch=stable", cwd=source)
    git("add", "--all", cwd=source)
    git("commit", "--quiet", "--message", "buildpack", cwd=source)
    bare = tmp_path / "hello-buildpack.git"
    git("clone", "--quiet", "--bare", str(source), str(bare), cwd=tmp_path)

    app = deployer.create("git-buildpack")
    url = f"file://{bare}#stable"
    reply = deployer.client.put(
        f"/apps/{app}/buildpack-installations", json={"updates": [{"buildpack": url}]}
    )
    assert reply.status_code == 200, reply.text
    repo = make_repo(APPS / "custom-buildpack", tmp_path / "repo")
    pushed = deployer.push(repo, app)
    assert pushed.status == 0, pushed.output
    assert "-----> Hello app detected" in pushed.lines

    deployer.client.put(
        f"/apps/{app}/buildpack-installations",
        json={"updates": [{"buildpack": f"file://{tmp_path}/missing.git"}]},
    )
    commit(repo, "again")
    pushed = deployer.push(repo, app)
    assert pushed.status != 0
    assert "neither a buildpack directory" in pushed.output
