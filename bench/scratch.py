"""A benchmark's scratch directory, removed when the benchmark's process exits."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def scratch_dir(prefix: str) -> Path:
    """Return a new directory under the system's temp dir, removed at exit (an error too).

    A run leaves megabytes there (the hub's database, its copies of the logs): left behind,
    a day of runs filled /tmp with hundreds of them.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
