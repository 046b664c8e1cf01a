"""Hub-side git: find the commit to deliver, pack it as a bundle, run git in a project."""

from __future__ import annotations

import asyncio
import os

from dobby.core.errors import DispatchError


async def git(path: str, *args: str) -> tuple[int, str, str]:
    """Run git in ``path`` on the hub; return (status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        "git",
        "-C",
        path,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


async def head_commit(path: str) -> str:
    """Return the commit the project's checkout is on."""
    status, out, err = await git(path, "rev-parse", "--verify", "HEAD^{commit}")
    if status != 0:
        raise DispatchError(f"project at {path} has no commit to deliver: {err.strip()}")
    return out.strip()


async def create_bundle(path: str, dest: str, *, base: str, have: str | None) -> str:
    """Write a bundle of ``base`` into ``dest``, incremental from ``have`` when possible.

    ``have`` is the last commit the host's mirror holds; it is used as the bundle's
    prerequisite only if it is an ancestor of ``base`` here, else a full bundle is sent.
    """
    # git bundle needs a ref name, not a bare sha: point a private ref at base.
    ref = "refs/dobby/deliver"
    status, _, err = await git(path, "update-ref", ref, base)
    if status != 0:
        raise DispatchError(f"cannot prepare bundle in {path}: {err.strip()}")
    args = ["bundle", "create", "-q", dest, ref]
    if have and have != base:
        ok, _, _ = await git(path, "merge-base", "--is-ancestor", have, base)
        if ok == 0:
            args.append(f"^{have}")
    status, _, err = await git(path, *args)
    if status != 0 or not os.path.exists(dest):
        raise DispatchError(f"git bundle failed in {path}: {err.strip()}")
    return dest


class RepoLocks:
    """The locks that serialise git writes on the hub: one per project's repository."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def project(self, name: str) -> asyncio.Lock:
        """Return the lock of a project's repository (bundles out, results in, merges)."""
        return self._locks.setdefault(name, asyncio.Lock())
