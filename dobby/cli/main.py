"""The ``dobby`` command line (console script ``dobby.cli.main:main``): a client of the hub.

This module only assembles: the group and shared helpers live in :mod:`dobby.cli.app`, the
commands in one module per subject, each exporting ``COMMANDS``.
"""

from __future__ import annotations

from dobby.cli import (
    deploy,
    hosts,
    hub,
    init,
    integrations,
    machines,
    projects,
    races,
    results,
    scheduler,
    tasks,
)
from dobby.cli.app import cli

for module in (
    hub,
    tasks,
    projects,
    scheduler,
    results,
    races,
    hosts,
    machines,
    init,
    deploy,
    integrations,
):
    for command in module.COMMANDS:
        cli.add_command(command)

main = cli
