"""``dobby hosts check`` and ``bootstrap``: is a host ready for Dobby, and what to do if not.

One probe script gathers facts (tool versions, disk, GPUs, package manager) in one round trip;
:func:`interpret` turns facts into checks, each with an actionable message (pure, table-tested).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dobby.core.errors import TransportError
from dobby.core.models import Host
from dobby.hostside.credentials import render_credentials
from dobby.hostside.login import render_adopt
from dobby.hostside.scripts import parse_kv, quote_env_value, shell_quote
from dobby.hostside.slurm import render_capacity
from dobby.machines.credentials import CHECKS as CREDENTIAL_CHECKS
from dobby.machines.gpu import GPU_QUERY, NO_GPU_EXITS, parse_gpus
from dobby.machines.slurm.capacity import capacity, parse_sinfo
from dobby.transport import make_transport

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MIN_FREE_KIB = 1 << 20  # 1 GiB: each task gets a git worktree
SLOW_SHELL_MS = 50.0  # extra cost per command beyond a file read that earns a warning
INSTALL_HINTS = {
    "claude": "npm install -g @anthropic-ai/claude-code",
    "codex": "npm install -g @openai/codex",
}
PACKAGE_MANAGERS = ("apt-get", "dnf", "yum", "apk", "pacman", "zypper", "brew")


@dataclass
class Check:
    """One line of the report: what was checked, the outcome, and what to do."""

    name: str
    status: str  # ok | warn | fail | skip
    message: str


@dataclass
class HostReport:
    """Every check of one host."""

    host: str
    target: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "target": self.target,
            "ok": self.ok,
            "checks": [asdict(c) for c in self.checks],
        }


def target_of(host: Host) -> str:
    """Return ``user@address:port`` (or ``local``) for messages."""
    if host.connection == "local":
        return "local"
    who = f"{host.user}@" if host.user else ""
    return f"{who}{host.address or host.name}:{host.port}"


def render_facts(*, env: Mapping[str, str], workdir: str, gpus: bool) -> str:
    """Return the probe printing ``key=value`` facts about a host, with the env a task gets
    (the user's login environment, then the inventory env)."""
    exports = render_adopt() + "".join(
        f"export {k}={quote_env_value(str(v))}; " for k, v in env.items()
    )
    w = (
        shell_quote(workdir)
        if not workdir.startswith("~/")
        else '"$HOME"/' + shell_quote(workdir[2:])
    )
    lines = [
        exports,
        f"w={w}",
        'printf "bash=%s\\n" "$BASH_VERSION"',
    ]
    for name, cmd in (
        ("tmux", "tmux -V"),
        ("git", "git --version"),
        ("claude", "claude --version"),
        ("codex", "codex --version"),
    ):
        lines.append(f'printf "{name}=%s\\n" "$({cmd} 2>/dev/null </dev/null | head -n1)"')
    lines += [
        'd="$w"; while [ ! -d "$d" ]; do d=$(dirname "$d"); done',
        'printf "workdir_exists=%s\\n" "$([ -d "$w" ] && echo 1 || echo 0)"',
        'printf "writable=%s\\n" "$([ -w "$d" ] && echo 1 || echo 0)"',
        'printf "disk_kib=%s\\n" "$(df -Pk "$d" 2>/dev/null | awk \'NR==2 {print $4}\')"',
        'printf "uid=%s\\n" "$(id -u)"',
        'pm=""; for p in ' + " ".join(PACKAGE_MANAGERS) + "; do "
        'command -v "$p" >/dev/null 2>&1 && { pm=$p; break; }; done; printf "pm=%s\\n" "$pm"',
        'printf "sudo=%s\\n" "$(sudo -n true 2>/dev/null && echo 1 || echo 0)"',
        render_credentials(),
    ]
    if gpus:
        lines += [
            f"g=$({GPU_QUERY} 2>&1); r=$?",
            'printf "gpu_rc=%s\\n" "$r"',
            'printf "%s\\n" "$g" | sed -e "s/^/gpu_line=/" | head -n 16',
        ]
    return "\n".join(line for line in lines if line) + "\n"


def parse_facts(text: str) -> dict[str, Any]:
    """Parse the probe's answer (``gpu_line`` may repeat)."""
    facts: dict[str, Any] = dict(parse_kv(text))
    facts["gpu_lines"] = [
        line.partition("=")[2] for line in text.splitlines() if line.startswith("gpu_line=")
    ]
    return facts


def _gib(kib: int) -> str:
    return f"{kib / (1 << 20):.1f} GiB"


def interpret(
    host: Host, facts: Mapping[str, Any], *, shell_ms: float | None = None
) -> list[Check]:
    """Return the checks of a reachable host from its facts (pure)."""
    checks: list[Check] = []
    bash = facts.get("bash") or ""
    checks.append(
        Check("bash", OK, bash)
        if bash
        else Check(
            "bash",
            FAIL,
            "the login shell is not bash: make bash the user's shell (chsh -s /bin/bash)",
        )
    )
    missing: list[str] = []
    for tool in ("tmux", "git"):
        version = facts.get(tool) or ""
        if version:
            checks.append(Check(tool, OK, version))
        else:
            missing.append(tool)
            checks.append(
                Check(
                    tool,
                    FAIL,
                    f"{tool} not found on PATH: `dobby hosts bootstrap "
                    f"{host.name} --install`, or install it with the package manager",
                )
            )
    for agent in ("claude", "codex"):
        version = facts.get(agent) or ""
        if version:
            checks.append(Check(agent, OK, version))
            if agent in host.backends:
                found, what = CREDENTIAL_CHECKS[agent](facts)
                checks.append(Check(f"{agent} credentials", OK if found else FAIL, what))
        elif agent in host.backends:
            checks.append(
                Check(
                    agent,
                    FAIL,
                    f"{agent} not found on PATH (inventory env applied): "
                    f"install it ({INSTALL_HINTS[agent]}), set env.PATH in the "
                    f"inventory, or remove {agent} from the host's backends",
                )
            )
        else:
            checks.append(Check(agent, SKIP, "not in the host's backends"))
    kib = int(facts["disk_kib"]) if str(facts.get("disk_kib") or "").isdigit() else None
    where = host.workdir
    if facts.get("writable") == "0":
        checks.append(
            Check(
                "workdir",
                FAIL,
                f"{where} cannot be created or written by "
                f"{host.user or 'this user'}: fix its permissions or set workdir",
            )
        )
    elif kib is None:
        checks.append(Check("disk", WARN, f"could not read free space for {where} (df failed)"))
    elif kib < MIN_FREE_KIB:
        checks.append(
            Check(
                "disk",
                FAIL,
                f"only {_gib(kib)} free for {where}: each task needs "
                "a git worktree; free space or point workdir elsewhere",
            )
        )
    else:
        made = "" if facts.get("workdir_exists") == "1" else " (not created yet: bootstrap)"
        checks.append(Check("disk", OK, f"{_gib(kib)} free for {where}{made}"))
    checks.append(_gpu_check(host, facts))
    if shell_ms is not None:
        if shell_ms > SLOW_SHELL_MS:
            checks.append(
                Check(
                    "shell rc",
                    WARN,
                    (
                        f"each command costs ~{shell_ms:.0f} ms more than a file read: the "
                        "shell's rc files are slow (bash sources ~/.bashrc for every SSH "
                        "command). Put `[[ $- == *i* ]] || return` near the top of "
                        "~/.bashrc, before slow parts such as pyenv/conda/nvm init"
                    ),
                )
            )
        else:
            checks.append(Check("shell rc", OK, f"~{max(shell_ms, 0):.0f} ms per command"))
    return checks


def _gpu_check(host: Host, facts: Mapping[str, Any]) -> Check:
    if host.gpus not in (True, "auto"):
        return Check("gpus", SKIP, "not checked (inventory gpus: false)")
    rc_text = str(facts.get("gpu_rc") or "")
    rc = int(rc_text) if rc_text.isdigit() else None
    if rc == 0:
        gpus = parse_gpus("\n".join(facts.get("gpu_lines") or []))
        names = sorted({g.name for g in gpus})
        return Check("gpus", OK, f"{len(gpus)} × {', '.join(names)}" if gpus else "none listed")
    reason = NO_GPU_EXITS.get(rc or -1) or f"nvidia-smi failed (exit {rc})"
    status = WARN if host.gpus == "auto" else FAIL
    fix = {
        127: "install the NVIDIA driver utilities or add nvidia-smi's directory to env.PATH",
        9: "load the driver (nvidia-smi as root tells why) or reboot after a driver update",
        6: "no GPU is visible to this user; set gpus: false if the host has none",
    }
    return Check("gpus", status, f"{reason}: {fix.get(rc or -1, 'run nvidia-smi on the host')}")


def describe_connect_error(host: Host, error: str) -> str:
    """Return an actionable message for a failed SSH connection."""
    where = target_of(host)
    # Match the start only: the rest may hold a path (a known_hosts file) with any words in it.
    if error.startswith("connection refused"):
        return (
            f"{where}: connection refused: is the machine up and sshd listening on "
            f"port {host.port}?"
        )
    if error.startswith("connection timed out"):
        return f"{where}: no answer (timed out): check the address, firewall and VPN"
    if error.startswith("permission denied"):
        key = host.identity_file or "your key"
        return (
            f"{where}: the server refused {key}: add its .pub to ~{host.user or ''}/.ssh/"
            f"authorized_keys on the host (ssh-copy-id -p {host.port} {host.user or 'USER'}@"
            f"{host.address})"
        )
    return f"{where}: {error}"


async def _host_key_check(host: Host, tofu: str | None) -> Check | None:
    """Return a failed check if the host key is unknown (None when it is known or pinned)."""
    from dobby.transport.ssh import host_key_known
    from dobby.transport.sshlib import asyncssh

    known = os.path.expanduser(host.known_hosts or "~/.ssh/known_hosts")
    if host.trust_on_first_use:
        known = tofu or known
    address = host.address or host.name
    if host_key_known(known, address, host.port):
        return None
    if host.trust_on_first_use:
        return None  # pinned at the first connection: the ssh check shows what happened
    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(address, host.port), 10)
    except (OSError, TimeoutError, asyncssh.Error):
        return None  # unreachable: the ssh check says so
    fingerprint = key.get_fingerprint() if key is not None else "?"
    entry = address if host.port == 22 else f"[{address}]:{host.port}"
    return Check(
        "host key",
        FAIL,
        (
            f"the key of {entry} ({fingerprint}) is not in {known}: compare it with the host's "
            f"`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`, then `ssh-keyscan -p {host.port} "
            f"{address} >> {known}` (or set trust_on_first_use: true)"
        ),
    )


async def _min_time(make: Any, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        await make()
        best = min(best, time.perf_counter() - start)
    return best * 1000


async def check_host(host: Host, *, tofu_known_hosts: str | None = None) -> HostReport:
    """Connect to a host and return its report (never raises for a host problem)."""
    report = HostReport(host=host.name, target=target_of(host))
    if host.connection in ("ssh", "slurm"):
        failed = await _host_key_check(host, tofu_known_hosts)
        if failed is not None:
            report.checks.append(failed)
            return report
    transport = make_transport(host, tofu_known_hosts=tofu_known_hosts)
    try:
        start = time.perf_counter()
        try:
            await transport.connect()
        except TransportError as exc:
            error = str(exc).removeprefix(f"{host.name}: ")
            report.checks.append(Check("ssh", FAIL, describe_connect_error(host, error)))
            return report
        took = (time.perf_counter() - start) * 1000
        who = "root" if transport.is_root else (host.user or "this user")
        report.checks.append(Check("ssh", OK, f"connected in {took:.0f} ms as {who}"))
        shell_ms = None
        if host.connection in ("ssh", "slurm"):
            # A file read runs no shell; a command runs the login shell and its rc files.
            home = transport.home or "/"
            cmd = await _min_time(lambda: transport.run("true", timeout=30))
            read = await _min_time(lambda: transport.stat(home))
            shell_ms = cmd - read
        slurm = host.connection == "slurm"  # a login node: its GPUs are the cluster's
        gpus = host.gpus in (True, "auto") and not slurm
        res = await transport.run(
            render_facts(env=host.env, workdir=host.workdir, gpus=gpus), timeout=60
        )
        report.checks += interpret(host, parse_facts(res.stdout), shell_ms=shell_ms)
        if slurm:
            partition = host.slurm.partition if host.slurm else None
            res = await transport.run(render_capacity(partition), timeout=60)
            report.checks.append(interpret_slurm(host, res.exit_status, res.stdout, res.stderr))
    except (TransportError, TimeoutError) as exc:
        report.checks.append(Check("ssh", FAIL, f"lost the connection: {exc}"))
    finally:
        await transport.close()
    return report


def interpret_slurm(host: Host, exit_status: int, stdout: str, stderr: str) -> Check:
    """Return the check of a Slurm host's partition from its ``sinfo`` answer (pure)."""
    partition = host.slurm.partition if host.slurm else None
    where = f"partition {partition}" if partition else "the default partition"
    if exit_status != 0:
        tail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
        return Check(
            "slurm", FAIL,
            f"sinfo failed (exit {exit_status}): {tail[0][:200]}; the login node needs Slurm's "
            "client commands (sbatch, squeue, sinfo, scontrol, scancel) and a slurm.conf",
        )  # fmt: skip
    room = capacity(parse_sinfo(stdout), partition)
    if not room.nodes:
        return Check("slurm", FAIL, f"no node in {where}: `sinfo -s` lists the partitions")
    text = (
        f"{where}: {room.nodes_available} of {room.nodes} node(s) take jobs, "
        f"{room.gpus} GPU(s), {room.gpus_free} free"
    )
    if host.gpus is True and not room.gpus:
        return Check("slurm", FAIL, f"{text}; the inventory says gpus: true")
    if not room.nodes_available:
        return Check("slurm", WARN, f"{text}; jobs will wait until a node takes them")
    return Check("slurm", OK, text)


def install_command(pm: str, packages: list[str], *, is_root: bool, sudo: bool) -> str | None:
    """Return the command installing ``packages`` with package manager ``pm`` (pure)."""
    if not packages or not pm:
        return None
    base = {
        "apt-get": "DEBIAN_FRONTEND=noninteractive apt-get install -y -q",
        "dnf": "dnf install -y",
        "yum": "yum install -y",
        "apk": "apk add",
        "pacman": "pacman -S --noconfirm",
        "zypper": "zypper --non-interactive install",
        "brew": "brew install",
    }.get(pm)
    if base is None:
        return None
    words = " ".join(shell_quote(p) for p in packages)
    command = f"{base} {words}"
    if pm == "apt-get":
        command = f"apt-get update -q && {command}"
    if pm == "brew" or is_root:
        return command
    return f"sudo -n sh -c {shell_quote(command)}" if sudo else None


def render_bootstrap(workdir: str) -> str:
    """Return the command creating the workdir layout (private to the user)."""
    w = (
        shell_quote(workdir)
        if not workdir.startswith("~/")
        else '"$HOME"/' + shell_quote(workdir[2:])
    )
    return f"set -e\nmkdir -p {w}/tasks {w}/repos {w}/worktrees\nchmod 700 {w}\necho ok\n"
