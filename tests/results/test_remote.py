"""The host scripts of dobby.results, run for real with bash, git and tmux on a temp dir."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from dobby.hostside import results as remote
from dobby.hostside.scripts import TaskPaths, parse_kv
from tests.fixtures.hub import make_git_project


def run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment with no git identity at all (like the test hosts' users)."""
    home = tmp_path / "home"
    home.mkdir()
    return {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1",
            "TMUX_TMPDIR": str(tmp_path)}  # fmt: skip


@pytest.fixture
def host(tmp_path: Path, env: dict[str, str]) -> tuple[Path, TaskPaths, str]:
    """A host workdir with the project's bare mirror and one task's worktree."""
    project = make_git_project(tmp_path / "app")
    base = subprocess.check_output(["git", "-C", str(project), "rev-parse", "HEAD"], text=True)
    workdir = tmp_path / "work"
    paths = TaskPaths(workdir=str(workdir), task_id="t1")
    subprocess.run(["git", "clone", "-q", "--bare", str(project), paths.repo("app")], check=True)
    subprocess.run(["git", "-C", paths.repo("app"), "worktree", "add", "-q", "-b", "dobby/t1",
                    paths.worktree, base.strip()], check=True, env=env)  # fmt: skip
    Path(paths.task_dir, "artifacts").mkdir(parents=True)
    return project, paths, base.strip()


def test_commit_and_bundle_brings_back_uncommitted_work(host, env) -> None:  # type: ignore[no-untyped-def]
    project, paths, base = host
    wt = Path(paths.worktree)
    (wt / "app.py").write_text("changed\n")
    (wt / "new file.txt").write_text("new\n")
    message = 'dobby: it\'s "quoted" $(touch pwned)\n\nbody'
    res = run(remote.render_commit_and_bundle(paths=paths, base=base, message=message), env)
    assert res.returncode == 0, res.stderr
    state = parse_kv(res.stdout)
    assert state["committed"] == "1" and int(state["bundle"]) > 0
    assert not (wt / "pwned").exists()
    log = subprocess.check_output(["git", "-C", str(wt), "log", "-1", "--format=%an|%B"], text=True)
    assert log.startswith("Dobby|" + message)
    subprocess.run(["git", "-C", str(project), "fetch", "-q", paths.file("result.bundle"),
                    f"{remote.result_ref('t1')}:refs/heads/dobby/t1"], check=True)  # fmt: skip
    show = subprocess.check_output(["git", "-C", str(project), "show", "dobby/t1:new file.txt"])
    assert show == b"new\n"
    # again, with nothing new: no commit, same head, bundle still made (head != base)
    again = parse_kv(run(remote.render_commit_and_bundle(paths=paths, base=base, message="m"),
                         env).stdout)  # fmt: skip
    assert "committed" not in again and again["head"] == state["head"]
    run(remote.render_drop_bundle(paths=paths), env)
    assert not Path(paths.file("result.bundle")).exists()


def committed_files(wt: Path) -> set[str]:
    out = subprocess.check_output(
        ["git", "-C", str(wt), "show", "--name-only", "--format=", "HEAD"], text=True
    )
    return set(out.split())


def test_commit_leaves_out_build_junk_without_a_gitignore(host, env) -> None:  # type: ignore[no-untyped-def]
    _, paths, base = host
    wt = Path(paths.worktree)
    assert not (wt / ".gitignore").exists()
    junk = ["pkg/__pycache__/m.cpython-311.pyc", "node_modules/left-pad/index.js", ".venv/bin/py",
            ".pytest_cache/v/x", "mod.pyc", "a.egg-info/PKG-INFO"]  # fmt: skip
    for name in junk:
        (wt / name).parent.mkdir(parents=True, exist_ok=True)
        (wt / name).write_text("junk\n")
    (wt / "pkg" / "m.py").write_text("real\n")
    res = run(remote.render_commit_and_bundle(paths=paths, base=base, message="m"), env)
    assert res.returncode == 0, res.stderr
    assert committed_files(wt) == {"pkg/m.py"}


def test_commit_follows_the_projects_gitignore_and_its_reincludes(host, env) -> None:  # type: ignore[no-untyped-def]
    _, paths, base = host
    wt = Path(paths.worktree)
    (wt / ".gitignore").write_text("secret.env\n!vendor.pyc\n")
    for name in ("secret.env", "vendor.pyc", "other.pyc", "keep.txt"):
        (wt / name).write_text("x\n")
    res = run(remote.render_commit_and_bundle(paths=paths, base=base, message="m"), env)
    assert res.returncode == 0, res.stderr
    assert committed_files(wt) == {".gitignore", "vendor.pyc", "keep.txt"}


def test_tracked_files_are_committed_even_if_they_look_like_junk(host, env) -> None:  # type: ignore[no-untyped-def]
    _, paths, base = host
    wt = Path(paths.worktree)
    (wt / "node_modules").mkdir()
    (wt / "node_modules" / "vendored.js").write_text("v1\n")
    subprocess.run(["git", "-C", str(wt), "add", "-f", "node_modules/vendored.js"], check=True)
    (wt / "node_modules" / "vendored.js").write_text("v2\n")
    res = run(remote.render_commit_and_bundle(paths=paths, base=base, message="m"), env)
    assert res.returncode == 0, res.stderr
    assert committed_files(wt) == {"node_modules/vendored.js"}


def test_commit_ignore_is_configurable(host, env) -> None:  # type: ignore[no-untyped-def]
    _, paths, base = host
    wt = Path(paths.worktree)
    (wt / "out.log").write_text("x\n")
    (wt / "__pycache__").mkdir()
    (wt / "__pycache__" / "a.pyc").write_text("x\n")
    script = remote.render_commit_and_bundle(paths=paths, base=base, message="m", ignore=["*.log"])
    assert run(script, env).returncode == 0
    assert committed_files(wt) == {"__pycache__/a.pyc"}


def test_nothing_changed_means_no_bundle(host, env) -> None:  # type: ignore[no-untyped-def]
    _, paths, base = host
    state = parse_kv(run(remote.render_commit_and_bundle(paths=paths, base=base, message="m"),
                         env).stdout)  # fmt: skip
    assert state == {"head": base}


def test_agent_reset_behind_base_sends_a_full_bundle(host, env) -> None:  # type: ignore[no-untyped-def]
    project, paths, base = host
    wt = paths.worktree
    (Path(wt) / "x").write_text("x")
    res = run(remote.render_commit_and_bundle(paths=paths, base=base, message="m"), env)
    head = parse_kv(res.stdout)["head"]
    res = run(remote.render_commit_and_bundle(paths=paths, base=head, message="m"), env)
    assert res.returncode == 0
    # base = the commit made above, HEAD = its parent: nothing past base, a full bundle then
    subprocess.run(["git", "-C", wt, "reset", "-q", "--hard", base], check=True)
    res = run(remote.render_commit_and_bundle(paths=paths, base=head, message="m"), env)
    assert res.returncode == 0, res.stderr
    assert "bundle" in parse_kv(res.stdout)


def test_pack_artifacts_globs_are_data(host, env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, paths, _ = host
    wt = Path(paths.worktree)
    (wt / "reports" / "deep").mkdir(parents=True)
    (wt / "reports" / "a b.json").write_text("{}")
    (wt / "reports" / "deep" / "c.json").write_text("[]")
    (wt / "reports" / "skip.txt").write_text("no")
    (wt / "reports" / "link.json").symlink_to("/etc/passwd")
    (wt / "evil").symlink_to(tmp_path / "home")
    (tmp_path / "home" / "secret.json").write_text("s")
    Path(paths.file("artifacts"), "model.bin").write_bytes(b"\x00\x01")
    globs = ["reports/*.json", "reports/**/*.json", "evil/*.json", "$(touch pwned).json", "none/*"]
    res = run(remote.render_pack_artifacts(paths=paths, globs=globs), env)
    assert res.returncode == 0, res.stderr
    assert int(parse_kv(res.stdout)["size"]) > 0
    with tarfile.open(paths.file("artifacts.tgz")) as tar:
        names = sorted(m.name for m in tar if m.isfile())
    assert names == ["./model.bin", "./reports/a b.json", "./reports/deep/c.json"]
    assert not list(wt.glob("pwned*")) and not (Path.cwd() / "pwned").exists()


def test_pack_artifacts_with_nothing_to_send(host, env) -> None:  # type: ignore[no-untyped-def]
    _, paths, _ = host
    res = run(remote.render_pack_artifacts(paths=paths, globs=["*.none"]), env)
    assert res.returncode == 0 and parse_kv(res.stdout) == {}


def test_gc_frees_and_spares_a_live_session(host, env) -> None:  # type: ignore[no-untyped-def]
    _, paths, _ = host
    workdir = paths.workdir
    Path(workdir, "tasks", "t2").mkdir(parents=True)
    Path(workdir, "tasks", "t2", "out.jsonl").write_text("x" * 5000)
    subprocess.run(["tmux", "new-session", "-d", "-s", "dobby-t2", "sleep 60"], env=env, check=True)
    try:
        items = [remote.GcItem("t1", "h", "app", "t1"), remote.GcItem("t2", "h", None, None)]
        dry = run(remote.render_gc(workdir=workdir, items=items, dry_run=True), env)
        freed, busy = remote.parse_gc(dry.stdout)
        assert set(freed) == {"t1"} and freed["t1"] > 0 and busy == ["t2"]
        assert Path(paths.worktree).exists()
        res = run(remote.render_gc(workdir=workdir, items=items, dry_run=False), env)
        assert res.returncode == 0, res.stderr
        assert not Path(paths.worktree).exists() and not Path(paths.task_dir).exists()
        assert Path(workdir, "tasks", "t2", "out.jsonl").exists()
        branches = subprocess.check_output(["git", "-C", paths.repo("app"), "branch"], text=True)
        worktrees = subprocess.check_output(
            ["git", "-C", paths.repo("app"), "worktree", "list"], text=True
        )
        assert "dobby/t1" not in branches and "worktrees/t1" not in worktrees
    finally:
        subprocess.run(["tmux", "kill-server"], env=env, check=False)
    # a missing workdir is nothing to do
    assert (
        run(remote.render_gc(workdir="/nonexistent", items=items, dry_run=False), env).returncode
        == 0
    )
