"""The generated run.sh / launch / cancel scripts, executed for real with bash and tmux."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dobby.hostside import scripts
from dobby.hostside.scripts import PROMPT
from tests.fixtures.wait import wait_until

NASTY = (
    'it\'s "quoted" $(touch /tmp/dobby-pwned) `id` ; rm -rf / \n\tnew line é ✓ 日本 \\ $HOME\n\n'
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("it's", "it's"),
        ("$(id)", "$(id)"),
        ("`id`", "`id`"),
        ("a\nb", "a\nb"),
        ("/opt/bin:$PATH", "/opt/bin:/usr/bin"),
        ("${PATH}:/x", "/usr/bin:/x"),
        ("$NOPE", ""),
        ("100%", "100%"),
    ],
)
def test_env_values_are_data_except_variable_references(
    tmp_path: Path, value: str, expected: str
) -> None:
    env_file = tmp_path / "env"
    env_file.write_text(scripts.render_env({"V": value}))
    out = subprocess.run(
        ["bash", "-c", f'. {env_file}; printf %s "$V"'],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin", "HOME": str(tmp_path)},
        check=True,
    )
    assert out.stdout == expected


def test_env_rejects_bad_names() -> None:
    with pytest.raises(ValueError, match="invalid environment variable name"):
        scripts.render_env({"A B": "x"})


def test_render_command_quotes_every_word_and_keeps_the_prompt_out() -> None:
    line = scripts.render_command(["claude", "-p", "--model", "x y", "--", PROMPT])
    assert line == "claude -p --model 'x y' -- \"$DOBBY_PROMPT\""


def _run_bundle(
    tmp_path: Path, argv: list[str], prompt: str, timeout: float | None = None
) -> tuple[Path, scripts.TaskPaths]:
    paths = scripts.TaskPaths(workdir=str(tmp_path / "w"), task_id="abcd1234")
    task_dir = Path(paths.task_dir)
    task_dir.mkdir(parents=True, exist_ok=True)
    Path(paths.worktree).mkdir(parents=True)
    (task_dir / "prompt.md").write_bytes(prompt.encode())
    (task_dir / "env").write_text(scripts.render_env({"GREETING": "hi 'there'"}))
    run_sh = scripts.render_run_sh(paths=paths, argv=argv, timeout=timeout, cwd=paths.worktree)
    (task_dir / "run.sh").write_text(run_sh)
    subprocess.run(["bash", str(task_dir / "run.sh")], capture_output=True, check=False)
    return task_dir, paths


def test_run_sh_passes_the_prompt_byte_identical_and_writes_exit_last(tmp_path: Path) -> None:
    if os.path.exists("/tmp/dobby-pwned"):
        os.unlink("/tmp/dobby-pwned")
    probe = (
        "import json,os,sys; json.dump({'argv': sys.argv[1:], 'cwd': os.getcwd(), "
        "'g': os.environ['GREETING'], 'id': os.environ['DOBBY_TASK_ID']}, "
        "open(os.environ['DOBBY_TASK_DIR'] + '/seen.json', 'w')); print('{\"ok\": 1}')"
    )
    task_dir, paths = _run_bundle(tmp_path, ["python3", "-c", probe, "--", PROMPT], NASTY)
    seen = json.loads((task_dir / "seen.json").read_text())
    assert seen["argv"] == ["--", NASTY]
    assert seen["cwd"] == paths.worktree
    assert seen["g"] == "hi 'there'"
    assert seen["id"] == "abcd1234"
    assert (task_dir / "exit").read_text() == "0\n"
    assert (task_dir / "out.jsonl").read_text() == '{"ok": 1}\n'
    assert not (task_dir / "exit.tmp").exists()
    assert not os.path.exists("/tmp/dobby-pwned")


def test_run_sh_records_failure_and_stderr(tmp_path: Path) -> None:
    task_dir, _ = _run_bundle(tmp_path, ["bash", "-c", PROMPT], "echo out; echo err >&2; exit 7")
    assert (task_dir / "exit").read_text() == "7\n"
    assert (task_dir / "out.jsonl").read_text() == "out\n"
    assert (task_dir / "err.log").read_text() == "err\n"


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        ("true", "0"),  # an empty directory: nothing to pack (one exec less at collection)
        ('echo r >"$DOBBY_ARTIFACTS/.hidden"', "1"),
        ('mkdir "$DOBBY_ARTIFACTS/sub"', "1"),
        ('rmdir "$DOBBY_ARTIFACTS"', "0"),
    ],
)
def test_the_stream_says_whether_the_run_left_anything_in_its_artifacts_directory(
    tmp_path: Path, command: str, flag: str
) -> None:
    paths = scripts.TaskPaths(workdir=str(tmp_path / "w"), task_id="abcd1234")
    Path(paths.file("artifacts")).mkdir(parents=True)  # as the launch leaves it
    task_dir, _ = _run_bundle(tmp_path, ["bash", "-c", PROMPT], command)
    assert (task_dir / "exit").read_text() == "0\n"
    follow = subprocess.Popen(
        ["bash", "-c", scripts.render_follow()], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert follow.stdin is not None and follow.stdout is not None
    try:
        follow.stdin.write(scripts.stream_command("+", "k", "0", str(task_dir)))
        follow.stdin.flush()
        lines = iter(follow.stdout.readline, b"")
        end = next(line for line in lines if line.startswith(b"X ")).decode().split()
        assert end == ["X", "k", "0", flag, "0", "0"]
    finally:
        follow.stdin.close()
        follow.wait(10)
        follow.stdout.close()


def test_run_sh_timeout_ends_the_command(tmp_path: Path) -> None:
    task_dir, _ = _run_bundle(tmp_path, ["bash", "-c", PROMPT], "sleep 30", timeout=1)
    assert (task_dir / "exit").read_text() == "124\n"


@pytest.fixture
def tmux_session_cleanup():
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


@pytest.fixture(autouse=True)
def own_tmux_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Give each test a tmux server of its own, ended after it (launches keep theirs up)."""
    sockets = tempfile.mkdtemp(prefix="tmx", dir="/tmp")  # short: a socket path has 108 bytes
    monkeypatch.setenv("TMUX_TMPDIR", sockets)
    yield
    subprocess.run(["tmux", "kill-server"], capture_output=True)
    shutil.rmtree(sockets, ignore_errors=True)


def live_processes(sid: str) -> list[str]:
    """Return the session's processes that are not zombies (tmux reaps run.sh a bit later)."""
    out = subprocess.run(["ps", "-o", "pid=,stat=", "-s", sid], capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if "Z" not in line.split()[-1]]


def _launched(
    tmp_path: Path, task_id: str, prompt: str, cleanup: list[str]
) -> tuple[scripts.TaskPaths, str]:
    """Launch a shell task for real in tmux; return its paths and session id (run.sh's pid)."""
    paths = scripts.TaskPaths(workdir=str(tmp_path / "w"), task_id=task_id)
    cleanup.append(paths.session)
    Path(paths.task_dir).mkdir(parents=True)
    (Path(paths.task_dir) / "prompt.md").write_text(prompt)
    (Path(paths.task_dir) / "env").write_text(scripts.render_env({}))
    (Path(paths.task_dir) / "run.sh").write_text(
        scripts.render_run_sh(
            paths=paths, argv=["bash", "-c", PROMPT], timeout=600, cwd=paths.worktree
        )
    )
    subprocess.run(
        ["bash", "-c", scripts.render_launch(paths=paths, project=None, base=None)], check=True
    )
    wait_until(lambda: Path(paths.file("agent.pid")).exists(), what="the agent to start")
    sid = Path(paths.file("pid")).read_text().strip()
    return paths, sid


def session_gone(paths: scripts.TaskPaths) -> bool:
    done = subprocess.run(["tmux", "has-session", "-t", paths.session], capture_output=True)
    return done.returncode != 0


def test_stop_ends_the_agent_and_run_sh_still_writes_exit(
    tmp_path: Path, tmux_session_cleanup
) -> None:
    assert shutil.which("tmux")
    paths, sid = _launched(
        tmp_path, "feed0001", "echo before; sleep 300 & sleep 300; wait", tmux_session_cleanup
    )
    wait_until(lambda: len(live_processes(sid)) >= 5, what="run.sh, tee, timeout, bash, sleeps")
    probe = subprocess.run(
        ["bash", "-c", scripts.render_probe(session=paths.session, paths=paths)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert scripts.parse_kv(probe.stdout) == {"session": "1", "exit": "", "started": "1"}
    subprocess.run(["bash", "-c", scripts.render_stop(paths=paths)], check=True, timeout=5)
    wait_until(lambda: not live_processes(sid), what="every process of the session to end")
    wait_until(lambda: session_gone(paths), what="the tmux session to end")
    # run.sh and tee ignored the TERM: the output is whole and the exit code written.
    assert Path(paths.file("exit")).read_text() == "143\n"
    assert Path(paths.file("out.jsonl")).read_text() == "before\n"


def test_stop_kills_an_agent_that_ignores_sigterm_after_the_grace(
    tmp_path: Path, tmux_session_cleanup
) -> None:
    paths, sid = _launched(
        tmp_path, "feed0003", "trap '' TERM; sleep 300 & sleep 300; wait", tmux_session_cleanup
    )
    wait_until(lambda: len(live_processes(sid)) >= 5, what="the session's processes")
    subprocess.run(["bash", "-c", scripts.render_stop(paths=paths, grace=3)], check=True, timeout=5)
    assert live_processes(sid)  # TERM was ignored; the request did not wait for the grace
    wait_until(lambda: not live_processes(sid), what="SIGKILL after the grace")
    wait_until(lambda: session_gone(paths), what="the tmux session to end")
    assert not Path(paths.file("exit")).exists()


def test_stop_kills_what_the_agent_left_behind_once_run_sh_ended(
    tmp_path: Path, tmux_session_cleanup
) -> None:
    # The agent ends on TERM; a child of its own that ignores TERM outlives it and run.sh.
    paths, sid = _launched(
        tmp_path, "feed0004", "(trap '' TERM; exec sleep 300 >/dev/null 2>&1) & sleep 300; wait",
        tmux_session_cleanup,
    )  # fmt: skip
    wait_until(lambda: len(live_processes(sid)) >= 5, what="the session's processes")
    subprocess.run(["bash", "-c", scripts.render_stop(paths=paths, grace=2)], check=True, timeout=5)
    wait_until(lambda: Path(paths.file("exit")).exists(), what="run.sh to write the exit code")
    left = live_processes(sid)
    assert len(left) == 1 and "sleep" in ps_command(left[0].split()[0]), left
    wait_until(lambda: not live_processes(sid), what="the leftover to be killed after the grace")


def test_a_stop_that_finds_no_pid_yet_keeps_the_agent_from_starting(tmp_path: Path) -> None:
    # A cancel right after the launch: the stop reaches the host before run.sh wrote its pid.
    ran = tmp_path / "agent-ran"
    paths = scripts.TaskPaths(workdir=str(tmp_path / "w"), task_id="feed0005")
    task_dir = Path(paths.task_dir)
    task_dir.mkdir(parents=True)
    Path(paths.worktree).mkdir(parents=True)
    (task_dir / "prompt.md").write_text(f"touch {ran}")
    (task_dir / "env").write_text(scripts.render_env({}))
    run_sh = scripts.render_run_sh(
        paths=paths, argv=["bash", "-c", PROMPT], timeout=600, cwd=paths.worktree
    )
    (task_dir / "run.sh").write_text(run_sh)
    subprocess.run(["bash", "-c", scripts.render_stop(paths=paths, grace=0)], check=True, timeout=5)
    done = subprocess.run(["bash", str(task_dir / "run.sh")], capture_output=True, timeout=30)
    assert done.returncode == 143 and (task_dir / "exit").read_text() == "143\n"
    assert not ran.exists()
    # The stop was for that run: the task's next run (a retry) clears it and starts.
    subprocess.run(["bash", "-c", scripts.render_clear_run(paths=paths)], check=True)
    done = subprocess.run(["bash", str(task_dir / "run.sh")], capture_output=True, timeout=30)
    assert done.returncode == 0 and ran.exists()


def ps_command(pid: str) -> str:
    return subprocess.run(["ps", "-o", "args=", "-p", pid], capture_output=True, text=True).stdout


def fake_claude(tmp_path: Path) -> tuple[Path, Path]:
    """Return a bin dir with a `claude` that notes each run in the second path returned."""
    fake, runs = tmp_path / "bin", tmp_path / "claude-runs"
    fake.mkdir(exist_ok=True)
    (fake / "claude").write_text(f"#!/bin/sh\necho x >>{runs}\necho '2.1.197 (Claude Code)'\n")
    (fake / "claude").chmod(0o755)
    return fake, runs


def probe(env: dict[str, str], workdir: Path, known: dict[str, str] | None = None) -> dict:
    cmd = scripts.render_versions(env, host="h1", workdir=str(workdir), known=known)
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True)
    assert out.stderr == ""
    return scripts.parse_kv(out.stdout)


def test_versions_probe_applies_host_env(tmp_path: Path) -> None:
    fake, _ = fake_claude(tmp_path)
    found = probe({"PATH": f"{fake}:$PATH"}, tmp_path / "w")
    assert found["claude"] == "2.1.197 (Claude Code)" and found["versions"] == "1"
    assert found["claude_at"] == f"{fake}/claude"
    assert found["tmux"].startswith("tmux") and found["tmux_at"]
    assert found["codex"] == "" and found["codex_at"] == ""
    assert found["bash"]


def test_versions_probe_reads_versions_only_when_a_tool_changed(tmp_path: Path) -> None:
    """A probe that knows where the tools were runs none of them while they stay put: a
    tool found elsewhere, gone, new, or replaced (newer than the last reading) is read."""
    fake, runs = fake_claude(tmp_path)
    work, env = tmp_path / "w", {"PATH": f"{fake}:$PATH"}
    first = probe(env, work)
    assert runs.read_text() == "x\n" and (work / scripts.versions_stamp("h1")).exists()
    known = {t: first[f"{t}_at"] for t in scripts.VERSION_TOOLS}

    quiet = probe(env, work, known)
    assert "versions" not in quiet and "claude" not in quiet and quiet["bash"]
    assert quiet["claude_at"] == f"{fake}/claude"
    assert runs.read_text() == "x\n"  # not run again

    # Replaced in place (a newer mtime than the stamp): read again.
    os.utime(fake / "claude", (time.time() + 5, time.time() + 5))
    assert probe(env, work, known)["versions"] == "1" and runs.read_text() == "x\nx\n"
    # Gone from PATH: read (its version is empty now).
    gone = probe({}, work, known)
    assert gone["versions"] == "1" and gone["claude"] == "" and gone["claude_at"] == ""
    # A tool appearing (codex was nowhere): read.
    (fake / "codex").write_text("#!/bin/sh\necho 'codex-cli 0.50.0'\n")
    (fake / "codex").chmod(0o755)
    os.utime(fake / "codex", (0, 0))  # dated long ago, as npm dates what it installs
    assert probe(env, work, known)["codex"] == "codex-cli 0.50.0"
    # Without a stamp (a work dir wiped): read.
    (work / scripts.versions_stamp("h1")).unlink()
    known["codex"] = f"{fake}/codex"
    assert probe(env, work, known)["versions"] == "1"


def test_a_repeated_launch_keeps_the_running_session_and_its_files(
    tmp_path: Path, tmux_session_cleanup
) -> None:
    paths = scripts.TaskPaths(workdir=str(tmp_path / "w"), task_id="feed0002")
    tmux_session_cleanup.append(paths.session)
    Path(paths.task_dir).mkdir(parents=True)
    (Path(paths.task_dir) / "prompt.md").write_text("echo started; sleep 300")
    (Path(paths.task_dir) / "env").write_text(scripts.render_env({}))
    (Path(paths.task_dir) / "run.sh").write_text(
        scripts.render_run_sh(
            paths=paths, argv=["bash", "-c", PROMPT], timeout=600, cwd=paths.worktree
        )
    )
    launch = scripts.render_launch(paths=paths, project=None, base=None)
    subprocess.run(["bash", "-c", launch], check=True)
    pid_file = Path(paths.file("pid"))
    # `echo $$ >pid` creates the file before it writes: wait for the content, not the name
    wait_until(
        lambda: pid_file.exists() and pid_file.read_text().strip(),
        timeout=10,
        what="the pid file",
        interval=0.02,
    )
    sid = pid_file.read_text()
    subprocess.run(["bash", "-c", launch], check=True)  # again: same session, nothing removed
    assert pid_file.read_text() == sid
    subprocess.run(["bash", "-c", scripts.render_stop(paths=paths, grace=0)], check=True)


@pytest.mark.parametrize("workdir", ["w", "a dir's w"])
def test_tmux_runs_run_sh_itself_unless_its_path_needs_quoting(
    tmp_path: Path, workdir: str, tmux_session_cleanup
) -> None:
    """A plain path costs no shell between tmux and run.sh; a path to quote still runs."""
    shell_log = tmp_path / "shell.log"
    shell = tmp_path / "logging-shell"  # tmux's default-shell: notes each use, then is bash
    shell.write_text(f'#!/bin/bash\necho "$*" >>{shlex.quote(str(shell_log))}\nexec bash "$@"\n')
    shell.chmod(0o755)
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", "keep", ";", "set-option", "-g", "exit-empty",
         "off", ";", "set-option", "-g", "default-shell", str(shell)],
        check=True,
    )  # fmt: skip
    paths = scripts.TaskPaths(workdir=str(tmp_path / workdir), task_id="feed0003")
    tmux_session_cleanup.append(paths.session)
    Path(paths.task_dir).mkdir(parents=True)
    (Path(paths.task_dir) / "prompt.md").write_text("echo ran")
    (Path(paths.task_dir) / "env").write_text(scripts.render_env({}))
    (Path(paths.task_dir) / "run.sh").write_text(
        scripts.render_run_sh(paths=paths, argv=["bash", "-c", PROMPT], timeout=None, cwd="/")
    )
    subprocess.run(
        ["bash", "-c", scripts.render_launch(paths=paths, project=None, base=None)], check=True
    )
    wait_until(lambda: Path(paths.file("exit")).exists(), what="the task to end")
    assert Path(paths.file("out.jsonl")).read_text() == "ran\n"
    used = shell_log.read_text() if shell_log.exists() else ""
    if workdir == "w":
        assert used == ""
    else:
        assert used.startswith("-c bash ")


def test_unpack_writes_each_file_byte_for_byte_from_stdin(tmp_path: Path) -> None:
    paths = scripts.TaskPaths(workdir=str(tmp_path / "w"), task_id="feed0009")
    texts = [
        ("prompt.md", "héllo\n\nwörld\x00 ", 0o600),
        ("env", "", 0o600),
        ("run.sh", "x" * 70000, 0o700),
    ]
    files = [(name, len(text.encode()), mode) for name, text, mode in texts]
    command = scripts.render_unpack(paths=paths, files=files) + "\necho rest=$(cat)"
    payload = "".join(text for _, text, _ in texts) + "tail"
    done = subprocess.run(
        ["bash", "-c", command], input=payload.encode(), capture_output=True, check=True
    )
    assert done.stdout == b"rest=tail\n"  # nothing read past the files
    for name, text, mode in texts:
        path = Path(paths.file(name))
        assert path.read_bytes() == text.encode(), name
        assert path.stat().st_mode & 0o777 == mode
    assert not list(Path(paths.task_dir).glob("*.tmp"))


def test_the_half_after_a_usage_limit_continues_the_output_and_forgets_the_exit(
    tmp_path: Path, tmux_session_cleanup
) -> None:
    paths = scripts.TaskPaths(workdir=str(tmp_path / "w"), task_id="feed0003")
    tmux_session_cleanup.append(paths.session)
    task_dir = Path(paths.task_dir)
    task_dir.mkdir(parents=True)
    (task_dir / "env").write_text(scripts.render_env({}))
    run_sh = scripts.render_run_sh(
        paths=paths, argv=["bash", "-c", PROMPT], timeout=60, cwd=paths.worktree
    )
    (task_dir / "run.sh").write_text(run_sh)

    def run(prompt: str, **launch: bool) -> None:
        (task_dir / "prompt.md").write_text(prompt)
        subprocess.run(
            ["bash", "-c", scripts.render_launch(paths=paths, project=None, base=None, **launch)],
            check=True,
        )
        wait_until(lambda: (task_dir / "exit").exists(), timeout=10, what="the exit file")
        wait_until(  # the session ends right after exit is written
            lambda: (
                subprocess.run(
                    ["tmux", "has-session", "-t", paths.session], stderr=subprocess.DEVNULL
                ).returncode
                != 0
            ),
            timeout=10,
            what="the tmux session to end",
        )

    run("echo first half; exit 1")
    assert (task_dir / "out.jsonl").read_text() == "first half\n"
    subprocess.run(["bash", "-c", scripts.render_clear_run(paths=paths)], check=True)
    assert not (task_dir / "exit").exists() and not (task_dir / "pid").exists()
    run("echo second half", keep_output=True, reuse_worktree=True)
    assert (task_dir / "out.jsonl").read_text() == "first half\nsecond half\n"
    assert (task_dir / "exit").read_text() == "0\n"
    run("echo a fresh start")  # anything else starts with no output of before
    assert (task_dir / "out.jsonl").read_text() == "a fresh start\n"


def _claimed_launch(
    paths: scripts.TaskPaths, prompt: str, launch_id: str, *, embed: bool
) -> subprocess.CompletedProcess[bytes]:
    run_sh = scripts.render_run_sh(
        paths=paths, argv=["bash", "-c", PROMPT], timeout=60, cwd=paths.worktree
    )
    texts = {"prompt.md": prompt, "env": scripts.render_env({"K": "v"}), "run.sh": run_sh}
    files = [(n, len(t.encode()), 0o600) for n, t in texts.items()]
    launch = scripts.render_launch(
        paths=paths,
        project=None,
        base=None,
        claim=scripts.claim_name(launch_id),
        files=files,
        texts=texts if embed else None,
    )
    payload = None if embed else "".join(texts.values()).encode()
    return subprocess.run(["bash", "-c", launch], input=payload, capture_output=True, check=False)


@pytest.mark.parametrize("embed", [True, False], ids=["in-the-command", "on-stdin"])
def test_a_claimed_launch_writes_its_files_exactly_and_a_retry_replaces_them(
    tmp_path: Path, embed: bool
) -> None:
    paths = scripts.TaskPaths(workdir=str(tmp_path / "w"), task_id="feed0010")
    # The nasty text stays data (a here-document for `:`); the command after it runs.
    prompt = ": <<'END'\n" + NASTY + "\nEND\nprintf '%s' \"$K\"\n"
    assert scripts.embeddable([prompt])
    first = _claimed_launch(paths, prompt, "aaa", embed=embed)
    assert first.returncode == 0, first.stderr
    exit_file = Path(paths.file("exit"))
    wait_until(exit_file.exists, timeout=10, what="the exit file")
    task_dir = Path(paths.task_dir)
    assert (task_dir / "prompt.md").read_text() == prompt
    assert all((task_dir / n).stat().st_mode & 0o777 == 0o600 for n in ("prompt.md", "run.sh"))
    assert (task_dir / "out.jsonl").read_text() == "v"
    assert not Path("/tmp/dobby-pwned").exists()
    run_sh = (task_dir / "run.sh").stat().st_ino
    # The same claim again starts nothing and changes nothing.
    again = _claimed_launch(paths, "echo twice", "aaa", embed=embed)
    assert again.returncode == scripts.CLAIMED_EXIT
    assert (task_dir / "prompt.md").read_text() == prompt
    # A retry (a new claim) starts clean: its files renamed into place, no output of before.
    wait_until(lambda: not live_session(paths.session), timeout=10, what="the session to end")
    retry = _claimed_launch(paths, "echo second", "bbb", embed=embed)
    assert retry.returncode == 0, retry.stderr
    wait_until(exit_file.exists, timeout=10, what="the retry's exit file")
    assert (task_dir / "out.jsonl").read_text() == "second\n"
    assert (task_dir / "run.sh").stat().st_ino != run_sh
    assert not list(task_dir.glob("*.tmp"))


def live_session(name: str) -> bool:
    return subprocess.run(["tmux", "has-session", "-t", name], capture_output=True).returncode == 0


def test_files_too_big_or_with_nul_bytes_do_not_ride_in_the_command() -> None:
    assert scripts.embeddable(["x" * (scripts.EMBED_LIMIT - 2)])  # quoted: 2 bytes more
    assert not scripts.embeddable(["x" * scripts.EMBED_LIMIT, "y"])
    assert not scripts.embeddable(["nul \x00 byte"])
    # Single quotes grow fivefold when quoted: measured as sent, not as written.
    assert not scripts.embeddable(["'" * (scripts.EMBED_LIMIT // 2)])


def test_the_largest_embeddable_launch_runs(tmp_path: Path) -> None:
    """The worst text that still rides in the command fits in one argument of the host."""
    paths = scripts.TaskPaths(workdir=str(tmp_path / "w"), task_id="feed0011")
    prompt = "'" * (scripts.EMBED_LIMIT // 5 - 400)  # quoting makes it ~EMBED_LIMIT
    texts = {"prompt.md": prompt, "env": "", "run.sh": "true\n"}
    assert scripts.embeddable(list(texts.values()))
    launch = scripts.render_launch(
        paths=paths,
        project=None,
        base=None,
        claim=scripts.claim_name("big"),
        files=[(n, len(t.encode()), 0o600) for n, t in texts.items()],
        texts=texts,
    )
    done = subprocess.run(["bash", "-c", launch], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr[-500:]
    assert Path(paths.file("prompt.md")).read_text() == prompt
