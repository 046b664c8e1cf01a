"""Fake ``claude`` and ``codex`` executables that replay recorded runs: no model, no API key.

Tests and ``dobby demo`` install them with :func:`install_fake_agents` and put the directory
first on PATH. Pick what a run does with a ``[scenario:NAME]`` token in the prompt or the
``FAKE_AGENT_SCENARIO`` variable (see :data:`SCENARIOS`); every run records its argv, prompt and
cwd in ``$DOBBY_TASK_DIR/fake-agent.json``. Like the real CLIs they read the prompt from stdin
when it is not an argument (claude) or is ``-`` (codex). What a real CLI keeps between runs
they keep under their HOME: the fake codex's session files in ``$CODEX_HOME/sessions/``, and an
account's usage limit and the sessions it cut in ``~/.fake-agent/``.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from dobby.replay.playbook import SCENARIOS

__all__ = ["AGENTS", "SCENARIOS", "install_fake_agents"]

AGENTS = ("claude", "codex")
_HERE = Path(__file__).resolve().parent
_WRAPPER = '#!/bin/sh\nexec /usr/bin/env python3 -I {script} {agent} "$@"\n'


def install_fake_agents(dest_dir: Path) -> Path:
    """Write world-readable ``claude`` and ``codex`` executables into dest_dir; return it."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest_dir.chmod(0o755)
    root = _HERE / "transcripts"
    for source in sorted(root.rglob("*")):  # transcripts/ and transcripts/quota/
        target = dest_dir / "transcripts" / source.relative_to(root)
        if source.is_dir():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.parent.chmod(0o755)
        shutil.copyfile(source, target)
        target.chmod(0o644)
    for name in ("agent.py", "playbook.py", "rollout.py"):
        shutil.copyfile(_HERE / name, dest_dir / name)
        (dest_dir / name).chmod(0o644)
    script = shlex.quote(str(dest_dir.resolve() / "agent.py"))
    for agent in AGENTS:
        wrapper = dest_dir / agent
        wrapper.write_text(_WRAPPER.format(script=script, agent=agent), encoding="utf-8")
        wrapper.chmod(0o755)
    return dest_dir
