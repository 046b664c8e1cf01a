"""asyncssh's import answered from the loader's cache: the same libraries, no process."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dobby.transport import sshlib

ROOT = Path(__file__).resolve().parents[2]
# Installed on every Debian (libc, libm, zlib, OpenSSL) and one that never is.
NAMES = ("c", "m", "z", "ssl", "crypto", "dobby-missing")


def python(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("name", NAMES)
def test_the_same_answer_as_the_standard_library(name: str) -> None:
    assert sshlib.find_library(name) == ctypes.util.find_library(name)


def test_a_loader_without_a_cache_is_asked_the_standard_way(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(sshlib, "LOADER_CACHE", tmp_path / "absent")
    with sshlib.loader_cache_lookups():  # the standard lookup, not this one calling itself
        assert sshlib.find_library("c") == sshlib._standard_find_library("c")
    assert ctypes.util.find_library is sshlib._standard_find_library


def test_importing_asyncssh_starts_no_process() -> None:
    # ldconfig, gcc and ld all go through subprocess; without the cache lookup the import fails.
    code = (
        "import subprocess\n"
        "def refuse(*args, **kwargs):\n"
        "    raise RuntimeError(f'a process was started: {args}')\n"
        "subprocess.Popen = refuse\n"
        "from dobby.transport.sshlib import asyncssh\n"
        "import ctypes.util\n"
        "print(asyncssh.__name__, ctypes.util.find_library.__module__)\n"
    )
    assert python(code) == "asyncssh ctypes.util"


def test_a_library_on_ld_library_path_is_found(tmp_path) -> None:
    real = ctypes.util.find_library("z")
    assert real
    (tmp_path / "libdobbyz.so.1").symlink_to(_path_of(real))
    code = "from dobby.transport.sshlib import find_library; print(find_library('dobbyz'))"
    assert python(code, LD_LIBRARY_PATH=str(tmp_path)) == "libdobbyz.so.1"
    # The loader reads LD_LIBRARY_PATH when the process starts: without it, nothing is found.
    assert python(code) == "None"


def _path_of(soname: str) -> str:
    """Return the file the loader opens for ``soname``, from this process's own maps."""
    ctypes.CDLL(soname)
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        if os.path.basename(path).startswith(soname):
            return path
    raise AssertionError(f"{soname} is not mapped")
