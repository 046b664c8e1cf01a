"""Shell run on a host by ``dobby deploy``: install the hub, start it, report it (pure).

The hub runs in a venv under ``base`` (default ``~/.dobby-deploy``), supervised by a systemd
--user unit when one answers (it then survives reboots), else by a tmux session. ``base/deploy.
json`` records how it was deployed (its port), so ``deploy status|logs`` need no flags.
"""

from __future__ import annotations

from dobby.hostside.scripts import shell_quote

SESSION = "dobby-hub"
UNIT = "dobby-hub.service"
RECORD = "deploy.json"


def _dir(base: str) -> str:
    """Return ``base`` as a shell word, keeping a leading ``~/`` live."""
    return '"$HOME"/' + shell_quote(base[2:]) if base.startswith("~/") else shell_quote(base)


def render_install(*, base: str, wheel: str, python: str) -> str:
    """Return the command making the venv and installing the pushed wheel (and its deps)."""
    b = _dir(base)
    pip = f"{b}/venv/bin/python -m pip install -q --disable-pip-version-check"
    return (
        "set -e\n"
        f"mkdir -p {b}/home {b}/inventory\n"
        f"[ -x {b}/venv/bin/python ] || {shell_quote(python)} -m venv {b}/venv\n"
        f"{pip} {shell_quote(wheel)}\n"
        # Same version, new code (an upgrade from a work tree): reinstall dobby itself.
        f"{pip} --no-deps --force-reinstall {shell_quote(wheel)}\n"
        f"{b}/venv/bin/dobby --version\n"
    )


def _health(b: str, port: int, *, show: bool = False) -> str:
    call = f'u.urlopen("http://127.0.0.1:{port}/health", timeout=2)'
    call = f"print({call}.read().decode())" if show else call
    return f"{b}/venv/bin/python -c 'import urllib.request as u; {call}'"


def render_unit(*, base: str, port: int) -> str:
    """Return the systemd --user unit running the hub (``base`` is absolute)."""
    return (
        "[Unit]\nDescription=Dobby hub (dobby deploy)\nAfter=network-online.target\n\n"
        f"[Service]\nEnvironment=DOBBY_HOME={base}/home\nWorkingDirectory={base}\n"
        f"ExecStart={base}/venv/bin/dobby start --host 127.0.0.1 --port {port} "
        f"--inventory {base}/inventory\nRestart=on-failure\nRestartSec=2\n"
        f"StandardOutput=append:{base}/hub.log\nStandardError=append:{base}/hub.log\n\n"
        "[Install]\nWantedBy=default.target\n"
    )


# Prints "systemd" when a user systemd answers (the hub then survives reboots), else "tmux".
DETECT_SUPERVISOR = "systemctl --user show-environment >/dev/null 2>&1 && echo systemd || echo tmux"


def render_start(*, base: str, port: int, supervisor: str = "tmux") -> str:
    """Return the command (re)starting the hub (tmux or systemd --user), waiting for /health."""
    b = _dir(base)
    health = _health(b, port)
    stop_all = (
        f"tmux kill-session -t {SESSION} 2>/dev/null || true\n"
        f"systemctl --user stop {UNIT} 2>/dev/null || true\n"
    )
    if supervisor == "systemd":
        launch = (
            "systemctl --user daemon-reload\n"
            f"systemctl --user enable {UNIT} >/dev/null 2>&1 || true\n"
            f"systemctl --user restart {UNIT}\n"
        )
        alive = f"systemctl --user is-active --quiet {UNIT}"
    else:
        run = (
            f"cd {b} && exec env -u DOBBY_URL -u DOBBY_INVENTORY DOBBY_HOME={b}/home "
            f"{b}/venv/bin/dobby start --host 127.0.0.1 --port {port} "
            f"--inventory {b}/inventory >>{b}/hub.log 2>&1"
        )
        launch = f"tmux new-session -d -s {SESSION} {shell_quote(run)}\n"
        alive = f"tmux has-session -t {SESSION} 2>/dev/null"
    return (
        stop_all
        + f"for i in $(seq 50); do {health} 2>/dev/null || break; sleep 0.1; done\n"
        + launch
        + f"for i in $(seq 300); do {health} 2>/dev/null && exit 0; {alive} || break; "
        + "sleep 0.1; done\n"
        + f"echo 'the hub did not come up; end of {base}/hub.log:' >&2\n"
        + f"tail -n 30 {b}/hub.log >&2\nexit 1\n"
    )


def render_status(*, base: str, port: int) -> str:
    """Return the command printing ``session=0|1`` and ``health=0|1``."""
    b = _dir(base)
    return (
        f"{{ tmux has-session -t {SESSION} 2>/dev/null || "
        f"systemctl --user is-active --quiet {UNIT} 2>/dev/null; }} "
        "&& echo session=1 || echo session=0\n"
        f'h=$({_health(b, port, show=True)} 2>/dev/null) && echo health=1 && echo "$h" '
        "|| echo health=0\n"
    )
