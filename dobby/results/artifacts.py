"""Artifacts: files a task declares (``--artifact 'reports/*.json'``) or writes under
``$DOBBY_ARTIFACTS``, brought back into ``results_dir/<id>/artifacts/``.

Names are paths relative to that directory. Every name from outside (a tar member, a URL)
goes through :func:`safe_name`: no absolute path, no ``..``, no control characters, and the
resolved file must stay inside the directory.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from dobby.core.errors import NotFound, ValidationError
from dobby.core.names import safe_name
from dobby.hostside import results as remote
from dobby.hostside.scripts import TaskPaths, parse_kv, shell_quote
from dobby.results.gitback import CollectError, fetch_file
from dobby.transport import Transport


def artifact_path(root: Path, name: str) -> Path:
    """Return the file of artifact ``name`` under ``root``; refuse anything outside it."""
    clean = safe_name(name)
    path = root / clean
    try:
        real = path.resolve(strict=True)
        inside = real.is_relative_to(root.resolve(strict=True))
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"no artifact {clean!r}") from None
    if not inside:
        raise ValidationError(f"invalid artifact name {name!r}: must stay inside the artifacts")
    if not real.is_file():
        raise NotFound(f"no artifact {clean!r}")
    return real


def list_artifacts(root: Path) -> list[dict[str, Any]]:
    """Return ``[{name, size}]`` of the regular files under ``root``, sorted by name."""
    if not root.is_dir():
        return []
    found = []
    for directory, _dirs, files in os.walk(root):
        for file in files:
            path = Path(directory, file)
            if path.is_symlink() or not path.is_file():
                continue
            found.append({"name": path.relative_to(root).as_posix(), "size": path.stat().st_size})
    return sorted(found, key=lambda a: a["name"])


def extract(archive: str, root: Path) -> list[dict[str, Any]]:
    """Unpack a tar.gz of artifacts into ``root`` (replacing it): regular files only."""
    staging = Path(tempfile.mkdtemp(prefix=".artifacts-", dir=root.parent))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue  # links, devices, directories (made as needed)
                try:
                    name = safe_name(posixpath.normpath(member.name))
                except ValidationError:
                    continue
                dest = staging / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                if source is None:
                    continue
                with source, open(dest, "wb") as sink:
                    shutil.copyfileobj(source, sink)
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise CollectError(f"could not unpack the artifacts: {exc}") from exc
    return list_artifacts(root)


async def bring_back(
    *, transport: Transport, paths: TaskPaths, globs: list[str], root: Path, left: bool = True
) -> list[dict[str, Any]]:
    """Pack the task's artifacts on its host, copy them into ``root``; return their list.

    With no glob declared, nothing to pack: when ``left`` is False (the host's log stream saw
    nothing in the artifacts directory at the run's end), or no directory is there at all
    (one SFTP stat instead of an exec; a task followed by polling pays the exec).
    """
    if not globs and (not left or await transport.stat(paths.file("artifacts")) is None):
        return []
    res = await transport.run(remote.render_pack_artifacts(paths=paths, globs=globs), timeout=600)
    state = parse_kv(res.stdout)
    host = transport.host.name
    if not res.ok:
        detail = (res.stderr or res.stdout).strip()[-500:]
        raise CollectError(
            f"{host}: could not pack the artifacts (exit {res.exit_status}): {detail}"
        )
    if "too_big" in state:
        raise CollectError(
            f"{host}: artifacts of {state['too_big']} bytes exceed the limit of "
            f"{remote.MAX_ARTIFACT_BYTES} bytes; left on the host in {paths.file('artifacts')}"
        )
    if "size" not in state:
        return []
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dobby-artifacts-", dir=root.parent) as tmp:
        local = os.path.join(tmp, "artifacts.tgz")
        await fetch_file(transport, paths.file("artifacts.tgz"), local)
        found = extract(local, root)
    await transport.run(f"rm -f {shell_quote(paths.file('artifacts.tgz'))}", timeout=60)
    return found
