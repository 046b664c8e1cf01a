"""The hub's host probe over real sshd: it reads the tools' versions only when they changed."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat

from dobby.hostside.scripts import VERSIONS_EVERY
from dobby.machines.hosts import HostManager, HostState
from tests.fixtures.sshd import SshHost


def test_probe_reads_versions_when_a_tool_changed_and_now_and_then(
    ssh_hosts: list[SshHost],
) -> None:
    host = ssh_hosts[0]
    bin_dir, runs = host.home / "probe-bin", host.home / "claude-runs"
    changes: list[str] = []
    shutil.rmtree(bin_dir, ignore_errors=True)
    runs.unlink(missing_ok=True)
    model = host.host_model(env={"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"})

    def install_claude(version: str) -> None:
        bin_dir.mkdir(exist_ok=True)
        path = bin_dir / "claude"
        path.write_text(f"#!/bin/sh\necho x >>{runs}\necho '{version} (Claude Code)'\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def ran() -> int:
        return len(runs.read_text().splitlines()) if runs.exists() else 0

    async def main() -> None:
        manager = HostManager(on_change=lambda name, state: changes.append(name))
        manager.set_hosts({model.name: model})
        try:
            state: HostState = await manager.probe(model.name)
            assert state.reachable and state.probed and state.clis == frozenset()
            assert state.versions["tmux"].startswith("tmux") and "claude" not in state.versions

            install_claude("2.1.197")  # a new tool on PATH: the next probe reads it
            state = await manager.probe(model.name)
            assert state.versions["claude"] == "2.1.197 (Claude Code)" and ran() == 1
            assert state.clis == frozenset({"claude"})

            for _ in range(3):  # nothing changed: nothing is run
                state = await manager.probe(model.name)
            assert ran() == 1 and state.versions["claude"] == "2.1.197 (Claude Code)"
            assert state.reachable and len(changes) >= 5  # each probe told

            # Upgraded in place, dated long ago (npm dates what it installs 1985): unseen
            # until the reading that comes every VERSIONS_EVERY whatever happened.
            install_claude("2.2.0")
            os.utime(bin_dir / "claude", (0, 0))
            assert (await manager.probe(model.name)).versions["claude"].startswith("2.1.197")
            state.read_at -= VERSIONS_EVERY
            assert (await manager.probe(model.name)).versions["claude"].startswith("2.2.0")
            assert ran() == 2

            (bin_dir / "claude").unlink()  # gone: read, and no longer a CLI of the host
            state = await manager.probe(model.name)
            assert "claude" not in state.versions and state.clis == frozenset()
        finally:
            await manager.close()

    asyncio.run(main())
