"""asyncssh, imported without running the C toolchain.

asyncssh asks ``ctypes.util.find_library`` at import for liboqs (twice, as ``oqs`` and
``liboqs``) and for nettle. On Linux each ask runs ``ldconfig -p`` and, for a library that is not
installed (liboqs, on most machines), ``gcc`` (with collect2 and ld) and then ``ld``: eleven
processes and ~20 ms of CPU at every hub start, paid on the busy box a restart finds. The
loader's own cache answers the same question without a process; a name is only given back once
the loader has opened it, so an entry for another architecture is passed over as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOADER_CACHE = Path("/etc/ld.so.cache")
_standard_find_library = ctypes.util.find_library


def find_library(name: str) -> str | None:
    """Return the name the loader opens ``lib<name>`` by, or None when it has none."""
    try:
        cache = LOADER_CACHE.read_bytes()
    except OSError:  # a loader without a cache (musl): the standard library's way
        return _standard_find_library(name)
    # The cache stores each library's path; its file name is the name the loader knows.
    pattern = re.compile(rb"/(lib" + re.escape(os.fsencode(name)) + rb"\.[^\x00/]+)\x00")
    found = {os.fsdecode(match.group(1)) for match in pattern.finditer(cache)}
    for directory in filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(":")):
        try:
            found.update(e.name for e in os.scandir(directory) if e.name.startswith(f"lib{name}."))
        except OSError:
            continue
    # The most specific name first (libssl.so.3 before libssl.so), as `ldconfig -p` lists them.
    for soname in sorted(found, key=lambda soname: (len(soname), soname), reverse=True):
        try:
            ctypes.CDLL(soname)
        except OSError:
            continue
        return soname
    return None


@contextmanager
def loader_cache_lookups() -> Iterator[None]:
    """Answer ``ctypes.util.find_library`` from the loader's cache while the block runs."""
    ctypes.util.find_library = find_library
    try:
        yield
    finally:
        ctypes.util.find_library = _standard_find_library


with loader_cache_lookups():
    import asyncssh as asyncssh
