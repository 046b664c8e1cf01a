"""The reconnect-and-read baseline of bench/recovery.py: a fresh asyncssh connection to every
host and an SFTP read of every task's whole out.jsonl, what any recovery has to do at least.

Importable (the in-process baseline) and runnable, so that the baseline can also start from
nothing, as a restarted hub does: ``python bench/reread.py SPEC.json``, where SPEC is a list
of ``[connect options, [paths…]]``, one per host. It imports asyncssh and nothing of Dobby's.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import asyncssh

Spec = Sequence[tuple[dict[str, Any], Sequence[str]]]


async def reconnect_and_read(spec: Spec) -> float:
    """Return the wall time of connecting to every host and reading every file whole."""

    async def one(options: dict[str, Any], paths: Sequence[str]) -> int:
        async with asyncssh.connect(**options) as conn:
            async with conn.start_sftp_client() as sftp:

                async def read(path: str) -> int:
                    async with sftp.open(path, "rb") as fh:
                        return len(await fh.read())

                return sum(await asyncio.gather(*(read(p) for p in paths)))

    t0 = time.perf_counter()
    await asyncio.gather(*(one(options, paths) for options, paths in spec))
    return time.perf_counter() - t0


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as fh:
        asyncio.run(reconnect_and_read(json.load(fh)))
