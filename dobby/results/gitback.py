"""Bring a task's work back to the hub's project repository, show it, merge it.

On the host, whatever the agent left uncommitted is committed and ``base..HEAD`` is bundled;
the hub reads the bundle over the task's own transport and fetches it as ``dobby/<id>``.
Everything that writes to the project's repository runs under the project's git lock.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from dobby.core.errors import Conflict, DobbyError
from dobby.core.models import Task
from dobby.hostside import results as remote
from dobby.hostside.scripts import TaskPaths, parse_kv
from dobby.store.git import git
from dobby.transport import Transport

CHUNK = 4 << 20
MAX_FILES = 1000  # files listed in a diff stat (the totals count them all)
MAX_DIFF = 8 << 20
HUB_IDENTITY = ("-c", "user.name=Dobby", "-c", "user.email=dobby@localhost")


class CollectError(DobbyError):
    """A task's work or artifacts could not be brought back from its host."""

    code = "collect_error"
    status = 502


class DirtyTree(Conflict):
    """The project's checkout has uncommitted changes: a merge would mix them in."""

    code = "dirty_tree"


class MergeConflict(Conflict):
    """The task's branch conflicts with the checkout's branch."""

    code = "merge_conflict"

    def __init__(self, message: str, *, files: list[str]) -> None:
        super().__init__(message)
        self.files = files


@dataclass
class GitResult:
    """What came back: the head commit, the branch (None when nothing changed), the stat."""

    head: str
    branch: str | None
    committed: bool
    diff_stat: dict[str, Any] = field(default_factory=dict)


def branch_name(task_id: str) -> str:
    """Return the branch of a task's work."""
    return f"dobby/{task_id}"


def commit_message(task: Task) -> str:
    """Return the message of the commit Dobby makes of what the agent left uncommitted."""
    title = task.title or task.id
    return (
        f"dobby: uncommitted work of task {task.id}\n\n{title}\n\n"
        f"Left uncommitted by the {task.backend} agent; committed by Dobby when the task ended.\n"
        f"Dobby-Task: {task.id}\n"
    )


async def fetch_file(transport: Transport, path: str, dest: str) -> int:
    """Copy a host file to ``dest`` with read-from-offset calls; return its size."""
    offset = 0
    try:
        with open(dest, "wb") as sink:
            while True:
                data = await transport.read_from(path, offset, CHUNK)
                if data is None:
                    raise CollectError(f"{transport.host.name}: {path} vanished while read")
                sink.write(data)
                offset += len(data)
                if len(data) < CHUNK:
                    return offset
    finally:
        transport.release(path)


async def bring_back(
    *,
    task: Task,
    transport: Transport,
    paths: TaskPaths,
    project_path: str,
    lock: asyncio.Lock,
) -> GitResult:
    """Commit leftovers on the host, fetch ``dobby/<id>`` into the project, stat the diff."""
    base = task.base_commit
    if not base:
        raise CollectError("the task has no base commit to compare with")
    host = transport.host.name
    script = remote.render_commit_and_bundle(
        paths=paths,
        base=base,
        message=commit_message(task),
        ignore=(*remote.COMMIT_JUNK, *task.commit_ignore),
    )
    res = await transport.run(script, timeout=600)
    state = parse_kv(res.stdout)
    if not res.ok or not state.get("head"):
        detail = (res.stderr or res.stdout).strip()[-500:]
        raise CollectError(
            f"{host}: could not commit the task's work (exit {res.exit_status}): {detail}"
        )
    head = state["head"]
    committed = state.get("committed") == "1"
    if "bundle" not in state:
        return GitResult(head=head, branch=None, committed=committed)
    branch = branch_name(task.id)
    with tempfile.TemporaryDirectory(prefix="dobby-result-") as tmp:
        local = os.path.join(tmp, f"{task.id}.bundle")
        await fetch_file(transport, paths.file("result.bundle"), local)
        async with lock:
            status, _, err = await git(
                project_path,
                "fetch",
                "-q",
                local,
                f"+{remote.result_ref(task.id)}:refs/heads/{branch}",
            )
    if status != 0:
        raise CollectError(
            f"git fetch of the result bundle into {project_path} failed: {err.strip()[-500:]}"
        )
    await transport.run(remote.render_drop_bundle(paths=paths), timeout=60)
    return GitResult(
        head=head,
        branch=branch,
        committed=committed,
        diff_stat=await diff_stat(project_path, base, head),
    )


async def diff_stat(project_path: str, base: str, head: str) -> dict[str, Any]:
    """Return ``{files: [{path, status, added, deleted}], files_changed, insertions, …}``."""
    status, numstat, err = await git(
        project_path, "diff", "--no-renames", "-z", "--numstat", base, head
    )
    if status != 0:
        raise CollectError(f"git diff failed in {project_path}: {err.strip()[-300:]}")
    _, names, _ = await git(project_path, "diff", "--no-renames", "-z", "--name-status", base, head)
    return parse_stat(numstat, names)


def parse_stat(numstat: str, name_status: str) -> dict[str, Any]:
    """Parse ``git diff -z --numstat`` and ``-z --name-status`` output into a diff stat."""
    kinds: dict[str, str] = {}
    parts = name_status.split("\0")
    for i in range(0, len(parts) - 1, 2):
        kinds[parts[i + 1]] = parts[i][:1]
    files: list[dict[str, Any]] = []
    insertions = deletions = 0
    for record in numstat.split("\0"):
        fields = record.split("\t", 2)
        if len(fields) != 3:
            continue
        added = int(fields[0]) if fields[0].isdigit() else None  # "-": a binary file
        deleted = int(fields[1]) if fields[1].isdigit() else None
        insertions += added or 0
        deletions += deleted or 0
        files.append(
            {
                "path": fields[2],
                "status": kinds.get(fields[2], "M"),
                "added": added,
                "deleted": deleted,
            }
        )
    return {
        "files": files[:MAX_FILES],
        "files_changed": len(files),
        "insertions": insertions,
        "deletions": deletions,
    }


async def diff_text(project_path: str, base: str, head: str) -> tuple[str, bool]:
    """Return the diff base..head as text (cut at MAX_DIFF) and whether it was cut."""
    status, out, err = await git(project_path, "diff", "--no-color", "--no-ext-diff", base, head)
    if status != 0:
        raise CollectError(f"git diff failed in {project_path}: {err.strip()[-300:]}")
    if len(out) > MAX_DIFF:
        return out[:MAX_DIFF], True
    return out, False


async def merge(*, task: Task, project_path: str, lock: asyncio.Lock) -> dict[str, Any]:
    """Merge ``dobby/<id>`` into the checkout's current branch, or raise why it cannot."""
    branch = task.branch
    if not branch or not task.head_commit:
        raise Conflict(f"task {task.id} has no branch to merge: no changes came back")
    async with lock:
        status, out, _ = await git(
            project_path, "rev-parse", "--verify", "-q", f"refs/heads/{branch}"
        )
        if status != 0:
            raise Conflict(f"branch {branch} no longer exists in {project_path}")
        tip = out.strip()
        status, out, _ = await git(project_path, "symbolic-ref", "-q", "--short", "HEAD")
        if status != 0:
            raise Conflict(f"cannot merge {branch}: {project_path} is on a detached HEAD")
        into = out.strip()
        status, _, _ = await git(project_path, "merge-base", "--is-ancestor", tip, "HEAD")
        if status == 0:
            return {"merged": True, "already": True, "branch": branch, "into": into,
                    "commit": (await _head(project_path))}  # fmt: skip
        if await _in_progress(project_path):
            raise DirtyTree(
                f"cannot merge {branch}: a merge, rebase or cherry-pick is in progress "
                f"in {project_path}"
            )
        _, dirty, _ = await git(project_path, "status", "--porcelain", "--untracked-files=no")
        if dirty.strip():
            files = [line[3:] for line in dirty.splitlines() if line.strip()]
            shown = ", ".join(files[:10]) + (" …" if len(files) > 10 else "")
            raise DirtyTree(
                f"cannot merge {branch} into {into}: the working tree of {project_path} has "
                f"uncommitted changes ({shown}); commit or stash them first"
            )
        conflicts = await _predict_conflicts(project_path, tip)
        if conflicts:
            raise _conflict(branch, into, conflicts)
        message = f"Merge {branch}: {task.title or task.id}"
        identity = () if await _has_identity(project_path) else HUB_IDENTITY
        status, out, err = await git(
            project_path,
            *identity,
            "merge",
            "--no-ff",
            "--no-edit",
            "-m",
            message,
            f"refs/heads/{branch}",
        )
        if status != 0:
            _, unmerged, _ = await git(project_path, "diff", "--name-only", "--diff-filter=U")
            await git(project_path, "merge", "--abort")
            files = unmerged.split()
            if files:
                raise _conflict(branch, into, files)
            raise Conflict(f"cannot merge {branch} into {into}: {(err or out).strip()[-500:]}")
        return {"merged": True, "already": False, "branch": branch, "into": into,
                "commit": await _head(project_path)}  # fmt: skip


def _conflict(branch: str, into: str, files: list[str]) -> MergeConflict:
    shown = ", ".join(files[:20]) + (" …" if len(files) > 20 else "")
    return MergeConflict(f"cannot merge {branch} into {into}: conflicts in {shown}", files=files)


async def _predict_conflicts(project_path: str, tip: str) -> list[str]:
    """Return the files a merge would conflict on, without touching the working tree."""
    status, out, _ = await git(
        project_path, "merge-tree", "--write-tree", "--name-only", "--no-messages", "HEAD", tip
    )
    if status == 1:
        return [line for line in out.splitlines()[1:] if line.strip()]
    return []  # clean (0), or a git without merge-tree --write-tree: the merge itself tells


async def _head(project_path: str) -> str:
    _, out, _ = await git(project_path, "rev-parse", "HEAD")
    return out.strip()


async def _has_identity(project_path: str) -> bool:
    status, out, _ = await git(project_path, "config", "user.email")
    return status == 0 and bool(out.strip())


async def _in_progress(project_path: str) -> bool:
    _, out, _ = await git(project_path, "rev-parse", "--git-dir")
    git_dir = os.path.join(project_path, out.strip())
    names = ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "rebase-merge", "rebase-apply")
    return any(os.path.exists(os.path.join(git_dir, n)) for n in names)
