"""What became of a launch the hub cannot vouch for (a hub restart, a lost answer): pure.

A launch claims its attempt on the host before it starts anything (see
:func:`dobby.hostside.scripts.render_launch`); the settle probe takes that claim itself when
it is still free. So the host's answer always decides, and a task whose launch may have
started is never launched a second time anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

# A launch that claimed its attempt has normally started its session a few ms later; past
# this (the launch command's own timeout) it died between the two and never will.
LAUNCH_GRACE = 60.0
# A launcher seen gone started no session; this long after, none it asked tmux for can still
# appear (a tmux server creates a session within ms of the request).
GONE_GRACE = 2.0


class Verdict(StrEnum):
    ADOPT = "adopt"  # it runs, or ran and left its exit code: follow it
    REQUEUE = "requeue"  # it never began, and now never will: place it again
    LOST = "lost"  # it began and its session died without an exit code
    WAIT = "wait"  # its launch is under way (or stuck): ask again soon


def verdict(state: Mapping[str, str], *, claimed_for: float) -> Verdict:
    """Decide from the settle probe's keys; ``claimed_for``: seconds the claim sat idle.

    ``launcher`` (``0``: the process that took the claim is gone) lets a launch killed
    between its claim and its session go back to the queue at once. Without it (a claim
    taken by an older hub, or a launch killed before it could sign) only time can tell.
    """
    if state.get("session") == "1" or state.get("exit"):
        return Verdict.ADOPT
    if state.get("fenced") == "1":
        return Verdict.REQUEUE
    if state.get("started") == "1":
        return Verdict.LOST
    if state.get("launcher") == "0" and claimed_for >= GONE_GRACE:
        return Verdict.REQUEUE
    if claimed_for >= LAUNCH_GRACE:
        return Verdict.LOST
    return Verdict.WAIT
