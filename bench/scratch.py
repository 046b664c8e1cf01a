"""A benchmark's scratch directory, removed when the benchmark's process exits."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path


def scratch_dir(prefix: str) -> Path:
    """Return a new directory under the system's temp dir, removed at exit (an error too).

    A run leaves megabytes there (the hub's database, its copies of the logs): left behind,
    a day of runs filled /tmp with hundreds of them.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


# When the last run deleted its hosts' files (see settle_deletions).
DELETED_MARK = Path(tempfile.gettempdir()) / "dobby-bench-deleted"
DELETION_WINDOW = 61.0


def delete_host_files(hosts) -> None:  # type: ignore[no-untyped-def]
    """Delete what the hosts' users keep of this run (~/.dobby), and note when.

    The next run's sshd fixture would delete it as it starts, right before that run measures.
    """
    for host in hosts:
        shutil.rmtree(host.home / ".dobby", ignore_errors=True)
    os.sync()
    DELETED_MARK.write_text(f"{time.time()}\n")


def settle_deletions() -> None:
    """Wait until the last run's deletions (delete_host_files) are a minute old.

    An ext4 without a journal (this project's benchmark machine) skips, reading each one,
    every inode freed in the last minute (five while the inode table is not written back)
    whenever it makes a file: thousands of files deleted just before a run made each file of
    the part measured first pay for all of them (`perf`: 21% of the machine's CPU), and that
    part is Dobby's.
    """
    try:
        left = float(DELETED_MARK.read_text()) + DELETION_WINDOW - time.time()
    except (OSError, ValueError):
        return
    if left > 0:
        ago = DELETION_WINDOW - left
        print(f"(waiting {left:.0f} s: the last run deleted its hosts' files {ago:.0f} s ago)")
        time.sleep(left)
