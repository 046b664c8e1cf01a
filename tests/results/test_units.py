"""Pure parts of dobby.results: names, stats, export, gc planning, follow-ups, diff stats."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import tarfile
from pathlib import Path

import pytest

from dobby.backends.pricing import DEFAULT_PRICES
from dobby.core.errors import NotFound, ValidationError
from dobby.core.models import Task, Tokens
from dobby.core.names import safe_name, validate_globs
from dobby.results import export, followup, gc, stats
from dobby.results.artifacts import artifact_path, extract, list_artifacts
from dobby.results.gitback import parse_stat

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
NASTY = [
    'a, "quoted" prompt, with commas',
    "multi\nline\r\nprompt\twith tab",
    '=HYPERLINK("x")',
    "é ✓ 日本語 \\ $(rm -rf ~) ''",
    "",
]


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "..", "a/../../b", "/etc/passwd", "a\x00b", "a\\..\\b", "", "x\ny",
     "./..", "a/./../../x"],
)  # fmt: skip
def test_traversal_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        safe_name(name)


@pytest.mark.parametrize(
    ("name", "clean"),
    [("report.json", "report.json"), ("./a//b c.txt", "a/b c.txt"), ("d/e/f", "d/e/f"),
     ("..a/b..", "..a/b..")],
)  # fmt: skip
def test_safe_names(name: str, clean: str) -> None:
    assert safe_name(name) == clean


@pytest.mark.parametrize(
    ("value", "ok"),
    [(["reports/*.json"], True), ("**/*.log", True), (["a b/*.txt"], True), (None, True),
     (["/etc/*"], False), (["../x"], False), (["a/../../x"], False), (["~/x"], False),
     ([""], False), (["x\ny"], False), ([3], False), ({"a": 1}, False), (["-rf"], False),
     (["x"] * 40, False)],
)  # fmt: skip
def test_artifact_globs(value: object, ok: bool) -> None:
    if ok:
        assert isinstance(validate_globs(value), list)
    else:
        with pytest.raises(ValidationError):
            validate_globs(value)


def test_artifact_path_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a b.txt").write_text("x")
    (tmp_path / "secret").write_text("s")
    (root / "link").symlink_to(tmp_path / "secret")
    (root / "dirlink").symlink_to(tmp_path)
    assert artifact_path(root, "sub/a b.txt").read_text() == "x"
    for bad in ("link", "dirlink/secret"):
        with pytest.raises(ValidationError):
            artifact_path(root, bad)
    with pytest.raises(NotFound):
        artifact_path(root, "sub")
    with pytest.raises(NotFound):
        artifact_path(root, "missing.txt")
    assert list_artifacts(root) == [{"name": "sub/a b.txt", "size": 1}]


def test_extract_keeps_only_safe_regular_files(tmp_path: Path) -> None:
    archive = tmp_path / "a.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (("./ok/a b.json", b"{}"), ("../evil", b"e"), ("/abs", b"a"),
                           ("x/../../evil2", b"e")):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("ln")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    root = tmp_path / "res" / "artifacts"
    root.mkdir(parents=True)
    (root / "stale").write_text("old attempt")
    assert extract(str(archive), root) == [{"name": "ok/a b.json", "size": 2}]
    assert not (tmp_path / "evil").exists() and not (tmp_path / "res" / "evil2").exists()


# -- diff stat ---------------------------------------------------------------------------------


def test_parse_stat() -> None:
    numstat = "1\t1\tapp.py\x002\t0\td/two file.txt\x00-\t-\tlogo.png\x000\t3\told.txt\x00"
    names = "M\x00app.py\x00A\x00d/two file.txt\x00A\x00logo.png\x00D\x00old.txt\x00"
    stat = parse_stat(numstat, names)
    assert stat["files_changed"] == 4 and (stat["insertions"], stat["deletions"]) == (3, 4)
    assert stat["files"][2] == {"path": "logo.png", "status": "A", "added": None, "deleted": None}
    assert [f["status"] for f in stat["files"]] == ["M", "A", "A", "D"]
    assert parse_stat("", "") == {"files": [], "files_changed": 0, "insertions": 0, "deletions": 0}


# -- follow-ups and gc planning ----------------------------------------------------------------


def _task(tid: str, **kw: object) -> Task:
    base = {"prompt": tid, "backend": "claude", "id": tid, "status": "completed", "host": "h1",
            "created_at": f"2026-11-25T0{len(tid) % 10}:00:00Z",
            "finished_at": "2026-11-20T00:00:00Z"}  # fmt: skip
    base.update(kw)
    return Task.from_dict(base)


def test_chain_and_worktree() -> None:
    tasks = {t.id: t for t in (_task("a"), _task("b", resume="a"), _task("c", resume="b"))}
    assert followup.chain(tasks["c"], tasks.__getitem__) == ["a", "b", "c"]
    assert followup.worktree_id(tasks["c"], tasks.__getitem__) == "a"
    assert followup.worktree_id(tasks["a"], tasks.__getitem__) == "a"
    loop = {"x": _task("x", resume="y"), "y": _task("y", resume="x")}
    assert followup.chain(loop["x"], loop.__getitem__) == ["y", "x"]
    assert followup.children(tasks.values()) == {"a": ["b"], "b": ["c"]}


def test_codex_follow_up_pays_only_its_own_tokens() -> None:
    parent = _task("p", backend="codex", session_id="t", model="gpt-5.5",
                   tokens={"input": 4500, "output": 150, "cache_read": 3000})  # fmt: skip
    child = _task("c", backend="codex", session_id="t", resume="p", cost_usd=1.0,
                  tokens={"input": 6000, "output": 200, "cache_read": 4000})  # fmt: skip
    followup.settle_usage(child, {"p": parent}.__getitem__, DEFAULT_PRICES)
    assert child.tokens == Tokens(input=1500, output=50, cache_read=1000)
    price = DEFAULT_PRICES["gpt-5.5"]
    assert child.cost_usd == pytest.approx((500 * price.input + 50 * price.output
                                            + 1000 * price.cache_read) / 1e6)  # fmt: skip
    claude_child = _task("k", resume="p", tokens={"input": 9}, cost_usd=0.5)
    followup.settle_usage(claude_child, {"p": parent}.__getitem__, DEFAULT_PRICES)
    assert claude_child.tokens.input == 9 and claude_child.cost_usd == 0.5


def _ts(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize(
    ("tasks", "older_than", "expected"),
    [
        # plain finished tasks past retention: each with its own worktree
        ([_task("a"), _task("b", finished_at="2026-11-25T11:59:00Z")], 3600,
         [("a", "a")]),
        # never a running or pending one, never one without a host, never one cleaned
        ([_task("r", status="running", finished_at=None), _task("p", status="pending", host=None),
          _task("c", host_cleaned_at="2026-11-21T00:00:00Z")], 0, []),
        # a chain whose follow-up still runs: the parent's dir goes, the shared worktree stays
        ([_task("a"), _task("b", resume="a", status="running", finished_at=None)], 0,
         [("a", None)]),
        # a finished chain: the worktree goes with its last task
        ([_task("a"), _task("b", resume="a", finished_at="2026-11-21T00:00:00Z")], 0,
         [("a", None), ("b", "a")]),
        # part of the chain is young: its worktree stays until that one goes
        ([_task("a"), _task("b", resume="a", finished_at="2026-11-25T11:59:30Z")], 3600,
         [("a", None)]),
        # a task retried after a cleanup ran again: its new leftovers go too
        ([_task("a", host_cleaned_at="2026-11-19T00:00:00Z")], 0, [("a", "a")]),
        # the rest of a chain that was partly cleaned before
        ([_task("a", host_cleaned_at="2026-11-22T00:00:00Z"), _task("b", resume="a")], 0,
         [("b", "a")]),
    ],
)  # fmt: skip
def test_gc_plan(
    tasks: list[Task], older_than: float, expected: list[tuple[str, str | None]]
) -> None:
    items = gc.plan(tasks, now=_ts("2026-11-25T12:00:00Z"), older_than=older_than)
    assert [(i.task_id, i.worktree) for i in items] == expected


# -- stats ---------------------------------------------------------------------------------------


def test_stats_totals_groups_and_unknown_costs() -> None:
    tasks = [
        _task("a1", project="app", cost_usd=0.0437, model=None, models=["claude-opus-4-8[1m]"],
              tokens={"input": 10, "output": 2}, created_at="2026-11-25T10:00:00Z",
              started_at="2026-11-25T10:00:02Z", finished_at="2026-11-25T10:00:12Z"),
        _task("b22", project="app", backend="codex", status="failed", cost_usd=None,
              created_at="2026-11-24T10:00:00Z", started_at="2026-11-24T10:00:04Z",
              finished_at="2026-11-24T10:00:34Z"),
        _task("c333", backend="shell", project=None, cost_usd=None,
              created_at="2026-11-20T10:00:00Z", started_at="2026-11-20T10:00:00Z",
              finished_at="2026-11-20T10:00:30Z"),
        _task("d4444", status="pending", host=None, waiting_on="dependencies",
              created_at="2026-11-25T11:00:00Z", finished_at=None),
    ]  # fmt: skip
    s = stats.compute(tasks, now=NOW)
    assert s["tasks"] == 4 and s["by_status"]["completed"] == 2
    assert s["success_rate"] == round(2 / 3, 4)
    assert s["cost_usd"] == pytest.approx(0.0437) and s["cost_unknown"] == 1  # codex only
    assert s["by_project"]["app"]["tasks"] == 2 and s["by_project"]["(none)"]["tasks"] == 2
    assert s["by_model"]["claude-opus-4-8[1m]"]["cost_usd"] == pytest.approx(0.0437)
    assert s["by_backend"]["codex"]["cost_unknown"] == 1
    assert s["by_day"]["2026-11-24"]["failed"] == 1
    assert s["queue"] == {"pending": 1, "running": 0, "draft": 0,
                          "waiting_on": {"dependencies": 1}}  # fmt: skip
    assert s["wait_s"]["avg"] == pytest.approx((2 + 4 + 0) / 3)
    assert s["run_s"]["count"] == 3 and s["run_s"]["avg"] == round(70 / 3, 3)
    recent = stats.compute(tasks, now=NOW, since=stats.parse_since("24h", NOW))
    assert recent["tasks"] == 2 and recent["queue"]["pending"] == 1
    assert stats.compute(tasks, now=NOW, project="app")["tasks"] == 2
    assert stats.parse_since("2026-11-24T00:00:00Z", NOW) == dt.datetime(
        2026, 11, 24, tzinfo=dt.UTC
    )
    with pytest.raises(ValidationError):
        stats.parse_since("yesterday-ish", NOW)


# -- export ----------------------------------------------------------------------------------------


def test_csv_export_parses_back_identical() -> None:
    docs = [_task(f"t{i}", prompt=p, title=f"t{i}", tokens={"input": i}).to_dict()
            for i, p in enumerate(NASTY)]  # fmt: skip
    text = "".join(export.csv_chunks(docs, batch=2))
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(rows[0]) == export.columns()
    assert [r["prompt"] for r in rows] == NASTY
    assert [r["tokens_input"] for r in rows] == [str(i) for i in range(len(NASTY))]
    assert json.loads(rows[0]["models"]) == []
    assert export.columns()[: len(export.COLUMNS)] == list(export.COLUMNS)
    assert "".join(export.csv_chunks([])).strip() == ",".join(export.columns())


def test_json_export_round_trips() -> None:
    docs = [_task(f"t{i}", prompt=p, cost_usd=0.1 + 0.2 * i).to_dict() for i, p in enumerate(NASTY)]
    text = "".join(export.json_chunks(docs, batch=2))
    assert json.loads(text) == docs
    assert export.parse_import(text.encode()) == docs
    lines = "\n".join(json.dumps(d) for d in docs).encode()
    assert export.parse_import(lines) == docs
    assert export.parse_import(json.dumps({"tasks": docs}).encode()) == docs
    assert [export.check_task(d, i).to_dict() for i, d in enumerate(docs)] == docs
    assert json.loads("".join(export.json_chunks([]))) == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [("x", "not a JSON object"), ({"id": "../x", "prompt": "p"}, "invalid id"),
     ({"id": "abcd", "prompt": 3}, "'prompt' must be a string"),
     ({"id": "abcd", "prompt": "p", "status": "weird"}, "unknown status")],
)  # fmt: skip
def test_import_rejects_bad_documents(doc: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        export.check_task(doc, 0)


def test_import_rejects_non_json() -> None:
    for data in (b"\xff\xfe", b"{not json", b'{"tasks": 3}'):
        with pytest.raises(ValidationError):
            export.parse_import(data)


async def test_store_streams_hot_and_imported_tasks_newest_first(tmp_path: Path) -> None:
    from dobby.store.db import Store
    from dobby.store.query import TaskFilter

    store = Store(path=tmp_path / "dobby.db")
    try:
        hot = [_task(f"h{i}", created_at=f"2026-11-2{i}T00:00:00Z") for i in (1, 3, 5)]
        for task in hot:
            store.put_task(task)
        old = [_task(f"a{i}", created_at=f"2026-1{i}-01T00:00:00Z",
                     finished_at=f"2026-1{i}-02T00:00:00Z").to_dict() for i in (0, 1)]  # fmt: skip
        mid = _task("a2", created_at="2026-11-22T00:00:00Z").to_dict()
        store.import_finished([*old, mid])
        assert store.has_task("a1") and store.has_task("h3") and not store.has_task("zz")
        order = [d["id"] for d in store.iter_task_docs(batch=2)]
        assert order == ["h5", "h3", "a2", "h1", "a1", "a0"]
        assert store.get_task("a0").to_dict() == old[0]
        assert [d["id"] for d in store.iter_task_docs(TaskFilter(project="none"))] == []
    finally:
        await store.close()
