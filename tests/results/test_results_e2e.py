"""Results end to end: artifacts, detail-status, stats and cost, export/import, over real sshd."""

from __future__ import annotations

import csv
import http.client
import io
import json
from pathlib import Path
from typing import Any

import pytest

from dobby.backends.pricing import DEFAULT_PRICES
from dobby.replay.playbook import TRANSCRIPTS
from tests.fixtures.hub import HubProcess, make_git_project
from tests.fixtures.sshd import SshHost
from tests.fixtures.wait import wait_until

pytestmark = pytest.mark.slow  # a hub process and agents on sshd hosts

PROMPTS = [
    'printf "%s\\n" "a, b, c"  # commas, "double" and \'single\' quotes',
    "echo first\necho 'second, line'\n\necho \"third\"\t# tab",
    'echo "=1+2"; echo ";;,,\\"\\"" # é ✓ 日本語',
]


@pytest.fixture
def hub_hosts(ssh_hosts: list[SshHost]) -> list[dict[str, Any]]:
    return [h.inventory_entry() for h in ssh_hosts[:2]]


def add(hub: HubProcess, *args: str, input: str | None = None) -> str:
    return json.loads(hub.cli("add", *args, "--json", input=input, check=True).stdout)["id"]


def raw_get(hub: HubProcess, path: str) -> tuple[int, bytes]:
    """GET a path exactly as written (no client-side normalisation of .. or %2e)."""
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def poll(hub: HubProcess, task_id: str, check: Any, what: str, timeout: float = 60) -> dict:
    """Poll detail-status until ``check(detail)`` holds while the task still runs."""
    detail: dict[str, Any] = {}

    def seen_running() -> dict[str, Any] | None:
        detail.update(hub.client().detail_status(task_id))
        if detail["status"] not in ("pending", "running"):
            raise AssertionError(f"never saw {what} while running: {json.dumps(detail)[:1500]}")
        return dict(detail) if detail["status"] == "running" and check(detail) else None

    return wait_until(
        seen_running,
        timeout=timeout,
        what=f"{what} while running",
        detail=lambda: json.dumps(detail)[:1500],
    )


def test_artifacts_round_trip_and_traversal_is_refused(
    hub: HubProcess, tmp_path: Path, ssh_hosts: list[SshHost]
) -> None:
    path = make_git_project(tmp_path / "app")
    hub.cli("register", str(path), "--name", "app", check=True)
    script = (
        "mkdir -p reports/sub && printf '{\"ok\": 1}' > 'reports/my report.json' && "
        "echo '[]' > reports/sub/deep.json && echo no > reports/skip.txt && "
        "printf '\\x00\\x01weights' > \"$DOBBY_ARTIFACTS/model weights.bin\""
    )
    task_id = add(hub, script, "--project", "app", "--backend", "shell", "--host", "h1",
                  "--artifact", "reports/*.json", "--artifact", "reports/**/*.json")  # fmt: skip
    task = hub.wait_status(task_id)
    assert task["status"] == "completed" and task["collect_error"] is None
    assert task["artifact_globs"] == ["reports/*.json", "reports/**/*.json"]
    names = {"model weights.bin": 9, "reports/my report.json": 9, "reports/sub/deep.json": 3}
    assert {a["name"]: a["size"] for a in task["artifacts"]} == names
    listed = hub.client().artifacts(task_id)["artifacts"]
    assert {a["name"]: a["size"] for a in listed} == names
    assert "reports/my report.json" in hub.cli("artifacts", task_id, check=True).stdout
    sink = io.BytesIO()
    hub.client().download_artifact(task_id, "reports/my report.json", sink)
    assert sink.getvalue() == b'{"ok": 1}'
    out = tmp_path / "weights.bin"
    hub.cli("artifacts", task_id, "model weights.bin", "-o", str(out), check=True)
    assert out.read_bytes() == b"\x00\x01weights"
    status, body = raw_get(hub, f"/tasks/{task_id}/artifacts/model%20weights.bin")
    assert status == 200 and body == b"\x00\x01weights"
    # the result lists them too; the file on the hub lives under results_dir/<id>/artifacts
    assert (hub.home / "results" / task_id / "artifacts" / "reports" / "my report.json").exists()

    secret = b"root:"
    for attempt in (
        "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "reports/..%2f..%2f..%2fout.jsonl",
        "%2Fetc%2Fpasswd", "..%5c..%5cetc%5cpasswd", "%252e%252e%252fetc%252fpasswd",
        "....//....//etc/passwd", "reports/%00.json", "..",
    ):  # fmt: skip
        status, body = raw_get(hub, f"/tasks/{task_id}/artifacts/{attempt}")
        assert status in (400, 404), (attempt, status)
        assert secret not in body and b"weights" not in body, attempt
        assert json.loads(body)["error"]["code"] in ("bad_request", "not_found")
    for attempt in ("../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd"):
        assert (
            raw_get(hub, f"/tasks/{task_id}/artifacts/{attempt}")[0] == 400
        )  # refused, not missed
    res = hub.cli("artifacts", task_id, "../../etc/passwd")
    assert res.returncode == 1 and "must stay inside" in res.stderr


def test_detail_status_while_running_and_after(hub: HubProcess, ssh_hosts: list[SshHost]) -> None:
    # Each task is polled as soon as it is added: a slow task runs ~5 s, about as long as
    # three `dobby add` processes take to start on a loaded machine.
    claude = add(hub, "[scenario:slow] create hello", "--host", "h1")
    seen = poll(hub, claude, lambda d: d["files"]["created"] == ["hello.txt"], "claude's file")
    assert seen["backend"] == "claude" and seen["host"] == "h1" and seen["session_id"]
    assert seen["last_tool"] in ("Write", "Edit", "Bash") and seen["elapsed_s"] is not None
    assert seen["tokens"]["input"] > 0 and seen["cost_estimated"] is True
    codex = add(hub, "[scenario:slow] create hello", "--backend", "codex", "--host", "h2",
                "--model", "gpt-5.5")  # fmt: skip
    running = poll(hub, codex, lambda d: d["commands"], "codex's command")
    assert running["commands"][0]["command"] == "echo hi > hello.txt && cat hello.txt"
    assert "detail" not in running  # flat document
    shell = add(hub, "for i in 1 2 3 4 5 6; do echo step $i; sleep 0.5; done", "--backend",
                "shell", "--host", "h2")  # fmt: skip
    step = poll(hub, shell, lambda d: (d["step"] or "").startswith("step "), "the shell step")
    assert step["lines"] >= 1 and step["cost_usd"] is None

    final = {t: hub.wait_status(t) for t in (claude, codex, shell)}
    assert all(t["status"] == "completed" for t in final.values())
    done = hub.client().detail_status(claude)
    assert done["step"] == "finished" and done["cost_estimated"] is False
    assert done["cost_usd"] == pytest.approx(0.0437) and done["files"]["created"] == ["hello.txt"]
    assert done["commands"] == [{"command": "cat hello.txt && ls", "exit_code": 0,
                                 "status": "completed"}]  # fmt: skip
    codex_done = hub.client().detail_status(codex)
    assert codex_done["files"]["created"] == ["notes.md"]
    assert codex_done["commands"][0]["exit_code"] == 0
    assert codex_done["cost_usd"] == pytest.approx(final[codex]["cost_usd"])
    shell_done = json.loads(hub.cli("detail-status", shell, "--json", check=True).stdout)
    assert shell_done["step"] == "step 6" and shell_done["exit_code"] == 0
    text = hub.cli("detail-status", claude, check=True).stdout
    assert "files created: hello.txt" in text and "cat hello.txt && ls  (exit 0)" in text


def _transcript_cost(name: str, model: str | None) -> float | None:
    """Return the cost of one recorded run, computed from the transcript itself."""
    lines = [json.loads(x) for x in (TRANSCRIPTS / name).read_text().splitlines() if x.strip()]
    if name.startswith("claude"):
        return float(lines[-1]["total_cost_usd"])
    usage = next(x["usage"] for x in reversed(lines) if x["type"] == "turn.completed")
    price = DEFAULT_PRICES.get(model or "")
    if price is None:
        return None
    fresh = usage["input_tokens"] - usage["cached_input_tokens"]
    return (fresh * price.input + usage["output_tokens"] * price.output
            + usage["cached_input_tokens"] * price.cache_read) / 1e6  # fmt: skip


def test_stats_export_and_import(hub: HubProcess, tmp_path: Path, ssh_hosts: list[SshHost]) -> None:
    path = make_git_project(tmp_path / "app")
    hub.cli("register", str(path), "--name", "app", check=True)
    ids = [add(hub, p, "--backend", "shell", "--project", "app") for p in PROMPTS]
    claude, codex = "claude-stream-json.jsonl", "codex-exec.jsonl"
    runs = [("claude", None, claude), ("claude", None, claude), ("codex", "gpt-5.5", codex),
            ("codex", None, codex)]  # fmt: skip
    agent_ids = []
    for backend, model, _ in runs:
        args = ['write a test, then "quote" it,\nplease', "--backend", backend]
        agent_ids.append(add(hub, *args, *(["--model", model] if model else [])))
    tasks = {t: hub.wait_status(t) for t in ids + agent_ids}
    assert all(t["status"] == "completed" for t in tasks.values())

    expected = [_transcript_cost(name, model) for _, model, name in runs]
    assert [tasks[t]["cost_usd"] for t in agent_ids] == pytest.approx(expected)
    stats = json.loads(hub.cli("stats", "--json", check=True).stdout)
    known = [c for c in expected if c is not None]
    assert stats["cost_usd"] == pytest.approx(sum(known))
    assert stats["cost_usd"] == pytest.approx(sum(t["cost_usd"] or 0 for t in tasks.values()))
    assert stats["cost_unknown"] == 1  # codex without a model: unknown, not zero
    assert stats["tasks"] == 7 and stats["by_status"]["completed"] == 7
    assert stats["success_rate"] == 1.0
    assert stats["by_backend"]["shell"]["tasks"] == 3
    assert stats["by_backend"]["claude"]["cost_usd"] == pytest.approx(sum(known[:2]))
    assert stats["by_project"]["app"]["tasks"] == 3
    assert sum(g["tasks"] for g in stats["by_host"].values()) == 7
    assert stats["queue"]["pending"] == 0 and stats["run_s"]["count"] == 7
    assert (
        json.loads(hub.cli("stats", "--project", "app", "--json", check=True).stdout)["tasks"] == 3
    )
    assert "cost:" in hub.cli("stats", "--since", "24h", check=True).stdout

    # CSV: prompts with commas, quotes and newlines parse back identical
    csv_file = tmp_path / "tasks.csv"
    hub.cli("export", "--format", "csv", "-o", str(csv_file), check=True)
    with open(csv_file, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == set(tasks)
    for task_id, task in tasks.items():
        assert by_id[task_id]["prompt"] == task["prompt"]
        assert by_id[task_id]["cost_usd"] == (
            "" if task["cost_usd"] is None else repr(task["cost_usd"])
        )
    project_csv = hub.cli("export", "--project", "app", check=True).stdout
    assert len(list(csv.DictReader(io.StringIO(project_csv, newline="")))) == 3

    # JSON: export, import into a fresh hub, export again: the same bytes
    json_file = tmp_path / "tasks.json"
    hub.cli("export", "--format", "json", "-o", str(json_file), check=True)
    exported = json.loads(json_file.read_text())
    assert {t["id"]: t for t in exported} == {t: hub.client().task(t) for t in tasks}
    other = HubProcess(home=tmp_path / "other", inventory=hub.inventory).start()
    try:
        report = json.loads(other.cli("import", str(json_file), "--json", check=True).stdout)
        assert report["imported"] == 7 and not report["skipped_existing"]
        again = json.loads(other.cli("import", str(json_file), "--json", check=True).stdout)
        assert again["imported"] == 0 and len(again["skipped_existing"]) == 7
        second = tmp_path / "again.json"
        other.cli("export", "--format", "json", "-o", str(second), check=True)
        assert second.read_bytes() == json_file.read_bytes()
        some = ids[0]
        assert other.client().task(some) == hub.client().task(some)
        assert other.client().result(some)["summary"] == tasks[some]["summary"]
        imported_stats = other.client().stats()
        assert imported_stats["cost_usd"] == pytest.approx(stats["cost_usd"])
    finally:
        other.stop()
