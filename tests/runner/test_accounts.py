"""One account, many names (issue 12.8): inventory names reaching one account share its mirror.

Deliveries into the account's project mirror are serialised per account (uid@address:port
and workdir), not per name: from a cold start, tasks under two names on one account all get
their project (before: "git fetch of bundle failed: fatal: bad object").
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dobby.hostside import scripts
from tests.fixtures.app import AppHub
from tests.fixtures.hub import HubProcess, git_commit, make_git_project
from tests.fixtures.sshd import SshHost

NAMES = ("front", "back")
PER_NAME = 3


@pytest.fixture
def hub_hosts(request: pytest.FixtureRequest, local_entry: dict[str, Any]) -> list[dict[str, Any]]:
    if "h3" not in request.fixturenames:  # the in-process hub: two names on this machine
        return [{**local_entry, "name": name} for name in NAMES]
    h3: SshHost = request.getfixturevalue("h3")
    return [h3.inventory_entry(name=name, labels=[name], max_agents=PER_NAME) for name in NAMES]


async def test_deliveries_to_one_account_under_two_names_take_turns(
    app_hub: AppHub, tmp_path: Path
) -> None:
    repo = make_git_project(tmp_path / "app")
    head = git_commit(repo, "big.txt", os.urandom(300_000).hex())
    core = app_hub.core
    core.register_project({"name": "app", "path": str(repo)})
    transports = [core.hosts.transport(name) for name in NAMES]
    for transport in transports:
        await transport.connect()
    assert transports[0].account == transports[1].account
    mirror = Path(transports[0].workdir) / "repos/app.git"
    for round_ in range(8):  # each round from cold: no mirror yet
        shutil.rmtree(mirror, ignore_errors=True)
        await asyncio.gather(
            *(
                core.runner.deliver(
                    "app",
                    head,
                    None,
                    transport,
                    scripts.TaskPaths(workdir=transport.workdir, task_id=f"r{round_}{name}"),
                )
                for transport, name in zip(transports, NAMES, strict=True)
            )
        )
        assert (mirror / "refs/dobby/sent").read_text().strip() == head


@pytest.mark.slow
def test_two_names_on_one_account_start_their_project_together_from_cold(
    hub: HubProcess, h3: SshHost, tmp_path: Path
) -> None:
    repo = make_git_project(tmp_path / "app")
    # Incompressible commits: a bundle that takes a while to fetch, so the deliveries overlap.
    for i in range(8):
        head = git_commit(repo, f"f{i}.txt", os.urandom(400_000).hex(), message=f"c{i}")
    hub.cli("register", str(repo), "--name", "app", check=True)
    ids = []
    for name in NAMES:
        for i in range(PER_NAME):
            out = hub.cli(
                "add", f"cat f7.txt | wc -c; echo {name}{i} >mark.txt", "--backend", "shell",
                "--project", "app", "--host", name, "--json", check=True,
            ).stdout  # fmt: skip
            ids.append(json.loads(out)["id"])
    for task_id in ids:
        done = hub.wait_status(task_id)
        assert done["status"] == "completed", done
        assert done["host"] in NAMES
    assert {hub.client().task(t)["host"] for t in ids} == set(NAMES)
    # One mirror on the account, holding the project's head.
    mirror = h3.home / ".dobby/repos/app.git"
    subprocess.run(
        [
            "git",
            "-c",
            "safe.directory=*",
            "-C",
            str(mirror),
            "cat-file",
            "-e",
            f"{head}^{{commit}}",
        ],
        check=True,
    )
