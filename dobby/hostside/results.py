"""Pure builders of the host commands that bring results back and clean hosts up.

Like :mod:`dobby.hostside.scripts`, nothing here does I/O: every function returns the text of
one bash command, so the exact bytes that reach a host are tested from tables. User text (task
titles, artifact globs) only ever appears shell-quoted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dobby.hostside.scripts import TaskPaths, shell_quote

# Hosts' test users (and many real ones) have no git identity: the commit Dobby makes of the
# agent's leftovers carries its own, which also tells readers who made it.
GIT_IDENTITY = "-c user.name=Dobby -c user.email=dobby@localhost -c commit.gpgsign=false"
MAX_ARTIFACT_BYTES = 1 << 30
# Never committed from a task's leftovers, even in a repository without a .gitignore: caches and
# installed dependencies that agents create while running tests. The project's own .gitignore
# still applies first (and can re-include one with `!pattern`); tracked files are not affected.
COMMIT_JUNK = (
    "__pycache__/",
    "*.py[co]",
    "node_modules/",
    ".venv/",
    ".tox/",
    ".nox/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    "*.egg-info/",
    ".coverage",
    ".DS_Store",
)


def result_ref(task_id: str) -> str:
    """Return the ref (in the host's mirror) the result bundle is made from."""
    return f"refs/dobby/results/{task_id}"


def render_commit_and_bundle(
    *,
    paths: TaskPaths,
    base: str,
    message: str,
    ignore: Sequence[str] = COMMIT_JUNK,
) -> str:
    """Return the command that commits the agent's leftovers and bundles base..HEAD.

    Untracked files matching ``ignore`` (gitignore patterns) stay out of the commit. Prints
    ``committed=1`` when it made a commit, ``head=<sha>``, and ``bundle=<bytes>`` when there
    is anything past ``base`` to bring back.
    """
    bundle = shell_quote(paths.file("result.bundle"))
    excludes = paths.file("commit-ignore")
    ref = shell_quote(result_ref(paths.task_id))
    patterns = " ".join(shell_quote(p) for p in ignore)
    return f"""set -e
cd {shell_quote(paths.worktree)}
printf '%s\\n' {patterns} > {shell_quote(excludes)}
git -c core.excludesFile={shell_quote(excludes)} add -A
if ! git diff --cached --quiet; then
  git {GIT_IDENTITY} commit -q --no-verify -m {shell_quote(message)}
  echo committed=1
fi
head=$(git rev-parse --verify 'HEAD^{{commit}}')
echo "head=$head"
rm -f {bundle}
if [ "$head" != {shell_quote(base)} ]; then
  git update-ref {ref} "$head"
  # Only what the hub lacks: base came from the hub. If HEAD is behind base (the agent reset
  # its branch), that bundle would be empty: send the whole history instead.
  git bundle create -q {bundle} {ref} {shell_quote("^" + base)} 2>/dev/null || \\
    git bundle create -q {bundle} {ref}
  echo "bundle=$(stat -c %s {bundle})"
fi
"""


CODEX_FACTS_RULE = "--- rollout ---"
# config.toml's top-level `model = …` as written; the first [table] ends the top level
_TOML_MODEL = (
    r"/^[[:space:]]*\[/{exit} "
    r'/^[[:space:]]*model[[:space:]]*=/{sub(/^[^=]*=[[:space:]]*/, ""); print; exit}'
)


def render_codex_facts(*, paths: TaskPaths) -> str:
    """Return the command printing what a codex run's stream lacks: its model, usage, limits.

    Prints ``key=value`` lines (``now``, ``utc_offset``, ``zone``, ``config_model``,
    ``thread_id``, ``rollout``), then :data:`CODEX_FACTS_RULE`, then the rollout lines that
    matter, each prefixed with its line number (``grep -n``): the last turn contexts, turn
    starts and ends, and token counts. A few KiB whatever the session's length.
    """
    d = shell_quote(paths.task_dir)
    rollout_kinds = "turn_context|task_started|task_complete"
    return f"""set -a; . {d}/env 2>/dev/null; set +a
home=${{CODEX_HOME:-$HOME/.codex}}
tid=$(grep -m1 -o '"thread_id": *"[^"]*"' {d}/out.jsonl 2>/dev/null | cut -d'"' -f4)
case $tid in *[!0-9A-Za-z-]*) tid= ;; esac
zone=${{TZ:-$(cat /etc/timezone 2>/dev/null || readlink /etc/localtime 2>/dev/null)}}
printf 'now=%s\\nutc_offset=%s\\nzone=%s\\n' "$(date +%s)" "$(date +%z)" "${{zone#*zoneinfo/}}"
printf 'config_model=%s\\n' "$(awk {shell_quote(_TOML_MODEL)} "$home/config.toml" 2>/dev/null)"
f=
if [ -n "$tid" ]; then
  f=$(find "$home/sessions" -type f -name "rollout-*-$tid.jsonl" 2>/dev/null | head -n 1)
fi
printf 'thread_id=%s\\nrollout=%s\\n' "$tid" "$f"
echo {shell_quote(CODEX_FACTS_RULE)}
if [ -n "$f" ]; then
  grep -nE '"type":"({rollout_kinds})"' "$f" | tail -n 6
  grep -n '"type":"token_count"' "$f" | tail -n 3
fi
true
"""


def render_drop_bundle(*, paths: TaskPaths) -> str:
    """Return the command that removes a fetched result bundle and its ref."""
    return (
        f"rm -f {shell_quote(paths.file('result.bundle'))}; "
        f"git -C {shell_quote(paths.worktree)} "
        f"update-ref -d {shell_quote(result_ref(paths.task_id))} 2>/dev/null; "
        "true"
    )


def render_pack_artifacts(*, paths: TaskPaths, globs: Sequence[str]) -> str:
    """Return the command that gathers artifacts into one tar.gz; prints ``size=<bytes>``.

    Files under $DOBBY_ARTIFACTS come as they are; files of the worktree matching a declared
    glob are copied in at their worktree-relative path. A glob expands from a variable with
    IFS empty: pathname expansion only, never command substitution or word splitting.
    """
    art = shell_quote(paths.file("artifacts"))
    tgz = shell_quote(paths.file("artifacts.tgz"))
    lines = ["set -e", f"mkdir -p {art}", f"rm -f {tgz}"]
    if globs:
        lines += [
            f"if cd {shell_quote(paths.worktree)} 2>/dev/null; then",
            "  root=$(pwd -P)",
            "  shopt -s globstar nullglob dotglob",
            "  IFS=",
        ]
        for pattern in globs:
            lines += [
                f"  pat={shell_quote(pattern)}",
                "  for f in $pat; do",
                '    [ -f "$f" ] && [ ! -L "$f" ] || continue',
                '    real=$(realpath -e -- "$f") || continue',
                '    case "$real" in "$root"/*) ;; *) continue ;; esac',  # symlinked dirs
                f'    mkdir -p -- {art}/"$(dirname -- "$f")"',
                f'    cp -p -- "$f" {art}/"$f"',
                "  done",
            ]
        lines.append("fi")
    lines += [
        f"total=$(du -sb {art} | cut -f1)",
        f'if [ "$total" -gt {MAX_ARTIFACT_BYTES} ]; then echo "too_big=$total"; exit 0; fi',
        f'if [ -n "$(ls -A {art})" ]; then',
        f"  tar -czf {tgz} -C {art} .",
        f'  echo "size=$(stat -c %s {tgz})"',
        "fi",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class GcItem:
    """One task's leftovers on its host: tasks/<id>, and its worktree when nothing needs it."""

    task_id: str
    host: str
    project: str | None = None
    worktree: str | None = None  # the worktree directory's id, when it goes too


def render_gc(*, workdir: str, items: Sequence[GcItem], dry_run: bool) -> str:
    """Return the command that frees task directories; prints ``freed ID KB`` / ``busy ID``.

    A task whose tmux session still exists, or a worktree some pane still works in, is left
    alone whatever the hub believes: nothing of a running task is ever removed.
    """
    lines = [
        f"cd {shell_quote(workdir)} || exit 0",
        f"dry={1 if dry_run else 0}",
        "busy=$(tmux list-panes -a -F '#{pane_current_path}' 2>/dev/null || true)",
        "free_task() {",
        '  local id=$1 wt=$2 project=$3 repo="repos/$3.git"',
        '  if tmux has-session -t "dobby-$id" 2>/dev/null; then echo "busy $id"; return; fi',
        '  if [ -n "$wt" ] && printf "%s\\n" "$busy" | grep -qF -- "$PWD/worktrees/$wt"; then',
        '    echo "busy $id"; return',
        "  fi",
        '  local dirs=("tasks/$id"); [ -n "$wt" ] && dirs+=("worktrees/$wt")',
        "  local kb",
        "  kb=$(du -sk -- \"${dirs[@]}\" 2>/dev/null | awk '{s+=$1} END {print s+0}')",
        '  if [ "$dry" != 1 ]; then',
        '    if [ -n "$wt" ] && [ -n "$project" ] && [ -d "$repo" ]; then',
        '      git -C "$repo" worktree remove --force "$PWD/worktrees/$wt" 2>/dev/null || true',
        "    fi",
        '    rm -rf -- "${dirs[@]}"',
        '    if [ -n "$project" ] && [ -d "$repo" ]; then',
        '      git -C "$repo" branch -D "dobby/$id" >/dev/null 2>&1 || true',
        '      git -C "$repo" update-ref -d "refs/dobby/results/$id" 2>/dev/null || true',
        "    fi",
        "  fi",
        '  echo "freed $id $kb"',
        "}",
    ]
    projects: list[str] = []
    for item in items:
        lines.append(
            f"free_task {shell_quote(item.task_id)} {shell_quote(item.worktree or '')} "
            f"{shell_quote(item.project or '')}"
        )
        if item.project and item.project not in projects:
            projects.append(item.project)
    if not dry_run:
        lines += [
            f"git -C {shell_quote(f'repos/{p}.git')} worktree prune 2>/dev/null || true"
            for p in projects
        ]
    lines.append("true")
    return "\n".join(lines) + "\n"


def parse_gc(text: str) -> tuple[dict[str, int], list[str]]:
    """Parse render_gc's output into ({task id: bytes freed}, [busy task ids])."""
    freed: dict[str, int] = {}
    busy: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "freed" and parts[2].isdigit():
            freed[parts[1]] = int(parts[2]) * 1024
        elif len(parts) == 2 and parts[0] == "busy":
            busy.append(parts[1])
    return freed, busy
