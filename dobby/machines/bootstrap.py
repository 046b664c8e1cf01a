"""Prepare a host for tasks: create its workdir; when asked, install a missing tmux and git.

Run by the hub (``POST /hosts/NAME/bootstrap``) or, with no hub, by ``dobby hosts bootstrap``
through :mod:`dobby.offline.hosts`. Never installs anything unless asked to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dobby.core.models import Host
from dobby.machines.checks import install_command, parse_facts, render_bootstrap, render_facts
from dobby.transport import make_transport


@dataclass
class BootstrapReport:
    """What bootstrapping one host did: lines starting ``✓`` (done), ``!`` (to do), ``✗``."""

    host: str
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(line.startswith("✗") for line in self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "ok": self.ok, "lines": list(self.lines)}


async def bootstrap_host(
    host: Host, *, install: bool = False, tofu_known_hosts: str | None = None
) -> BootstrapReport:
    """Create ``host``'s workdir and report tmux/git; install them only with ``install``."""
    report = BootstrapReport(host=host.name)
    out = report.lines
    transport = make_transport(host, tofu_known_hosts=tofu_known_hosts)
    try:
        await transport.connect()
        res = await transport.run(render_bootstrap(host.workdir), timeout=60)
        if not res.ok:
            out.append(f"✗ cannot create {host.workdir}: {res.stderr.strip()}")
            return report
        out.append(f"✓ {host.workdir} ready (tasks/, repos/, worktrees/)")
        facts_script = render_facts(env=host.env, workdir=host.workdir, gpus=False)
        facts = parse_facts((await transport.run(facts_script, timeout=60)).stdout)
        missing = [t for t in ("tmux", "git") if not facts.get(t)]
        if not missing:
            out.append("✓ tmux and git present")
            return report
        cmd = install_command(
            facts.get("pm") or "", missing, is_root=transport.is_root, sudo=facts.get("sudo") == "1"
        )
        if cmd is None:
            out.append(
                f"✗ missing {' '.join(missing)}: no package manager Dobby can use "
                "(or no passwordless sudo); install them by hand"
            )
        elif not install:
            out.append(f"! missing {' '.join(missing)}: rerun with --install to run `{cmd}`")
        else:
            res = await transport.run(cmd, timeout=900)
            status = "✓ installed" if res.ok else f"✗ install failed (exit {res.exit_status})"
            out.append(f"{status}: {' '.join(missing)} via `{cmd}`")
            if not res.ok:
                out.append((res.stderr or res.stdout).strip()[-400:])
        return report
    finally:
        await transport.close()
