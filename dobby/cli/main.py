"""The ``dobby`` command line (console script ``dobby.cli.main:main``): a client of the hub.

This module only assembles: the group and shared helpers live in :mod:`dobby.cli.app`, the
commands in one module per subject, each exporting ``COMMANDS``. :data:`COMMANDS` names the
module of each command and the first paragraph of its help, so the group imports a module only
when one of its commands runs (tests/cli/test_cli_package.py keeps this table true).
"""

from __future__ import annotations

from dobby.cli.app import cli

# name: (module, first paragraph of the command's help)
COMMANDS: dict[str, tuple[str, str]] = {
    "add": (
        "tasks",
        "Queue a task (or, with --cron/--every, a schedule; with --race K, a race of K attempts).",
    ),
    "agent": (
        "hosts",
        "Add this machine to a hub's hosts (it is then reached over SSH); --reverse for NAT.",
    ),
    "approve": (
        "scheduler",
        "Queue a draft; with an agent plan, it runs with the approved plan in its prompt.",
    ),
    "artifacts": (
        "results",
        "List a task's artifacts, or download artifact NAME (to stdout or -o FILE).",
    ),
    "attach": (
        "tasks",
        "Attach this terminal to the task's tmux session (over SSH for remote hosts).",
    ),
    "batch": ("scheduler", "Submit every task of a batch file (YAML) at once, all or nothing."),
    "batch-status": ("scheduler", "Show a batch: counts by status, cost so far, and each task."),
    "batches": ("scheduler", "List batches, newest first."),
    "cancel": ("tasks", "Cancel a task (or, given a race id r-…, the race and all its attempts)."),
    "demo": (
        "hub",
        "Run a self-contained demo: a local hub, a sample project, a few tasks; then clean up.",
    ),
    "deploy": (
        "deploy",
        "Deploy the hub to HOST (`deploy HOST`), or `deploy status|logs|stop HOST`.",
    ),
    "detail-status": (
        "results",
        "Show what a task's agent is doing now: step, tool, files, commands, tokens, cost.",
    ),
    "diff": (
        "results",
        "Print the changes a task made (its branch against the commit it started from).",
    ),
    "edit": (
        "scheduler",
        "Edit a draft or pending task; with no option, open $EDITOR on its prompt.",
    ),
    "export": (
        "results",
        "Export every task with its result fields (JSON re-imports with `dobby import`).",
    ),
    "gc": (
        "results",
        "Free finished tasks' worktrees and task directories on hosts (never a running one).",
    ),
    "gpus": ("machines", "Show the GPUs of every GPU host and the task using each one."),
    "hosts": (
        "hosts",
        "List the inventory's hosts with reachability, tool versions and running tasks.",
    ),
    "import": (
        "results",
        "Import tasks from a JSON export (FILE '-' reads stdin); known ids are skipped.",
    ),
    "init": (
        "init",
        "Set Dobby up here: .env, hub config, inventory with SSH hosts, project, MCP snippet.",
    ),
    "logs": ("results", "Print a task's log (readable by default; --raw for the original)."),
    "mcp-config": (
        "integrations",
        "Print the .mcp.json snippet that adds Dobby's tools to Claude Code.",
    ),
    "merge": (
        "results",
        "Merge a task's branch into its project's checkout (refused on conflict or dirty tree).",
    ),
    "plan": (
        "scheduler",
        "Create a draft that runs only once approved (`dobby approve ID`); '-' reads stdin.",
    ),
    "projects": (
        "projects",
        "List the registered projects and their policies (`projects set` changes them).",
    ),
    "race": (
        "races",
        "Compare a race's attempts: backend, host, time, cost, diff, check result and output.",
    ),
    "races": ("races", "List races, newest first."),
    "register": (
        "projects",
        "Register a git repository as a project (again: change its path, keep its settings).",
    ),
    "reject": ("scheduler", "Drop a draft (it ends cancelled; its planning run is stopped)."),
    "remote": (
        "machines",
        "Open an interactive agent session in tmux on HOST and attach to it (detach: Ctrl-b d).",
    ),
    "results": (
        "results",
        "Show what task TARGET produced, or list the results of project TARGET (newest first).",
    ),
    "retry": (
        "tasks",
        "Re-queue a failed or cancelled task (and, with --cascade, its failed dependents).",
    ),
    "schedules": (
        "scheduler",
        "List schedules with their next fire time (pause, resume, delete: subcommands).",
    ),
    "show": ("tasks", "Show every field of a task."),
    "slack": (
        "integrations",
        "Run the Slack bot: Socket Mode (SLACK_APP_TOKEN) or HTTP Events mode (--http PORT).",
    ),
    "spokes": ("hosts", "List hosts added with `dobby agent` (POST /spokes/register)."),
    "start": ("hub", "Run the hub (REST API + dashboard) in the foreground; Ctrl-C stops it."),
    "stats": (
        "results",
        "Show tasks by status, success rate, cost and tokens by project/backend/model/host/day.",
    ),
    "status": ("tasks", "List tasks, newest first (the newest 20 unless --limit or --all)."),
    "usage": (
        "scheduler",
        "Show each account's usage windows and limits (live), and the spend budgets.",
    ),
}

cli.lazy({name: (f"dobby.cli.{module}", summary) for name, (module, summary) in COMMANDS.items()})

main = cli
