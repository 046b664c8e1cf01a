"""Reverse SSH tunnel for ``dobby agent --reverse``: a machine behind NAT stays reachable.

The machine opens ``ssh -R`` to a host the hub can reach (usually the hub's own machine); the
hub then reaches this machine's sshd at ``127.0.0.1:PORT`` there. OpenSSH does the work; this
module only builds its command line, waits until it is up, and restarts it when it drops.
"""

from __future__ import annotations

import select
import subprocess
import time
from collections.abc import Callable

from dobby.core.errors import ValidationError
from dobby.core.retry import Backoff, Retry

READY = "dobby-tunnel-up"


def parse_target(target: str) -> tuple[str | None, str, int]:
    """Parse ``[USER@]HOST[:PORT]`` into (user, host, port)."""
    user, _, rest = target.rpartition("@")
    host, _, port = rest.partition(":")
    if not host or (port and not port.isdigit()):
        raise ValidationError(f"--reverse {target!r}: expected [USER@]HOST[:PORT]")
    return user or None, host, int(port) if port else 22


def reverse_argv(
    *,
    target: str,
    remote_port: int,
    local_address: str,
    local_port: int,
    identity_file: str | None = None,
    known_hosts: str | None = None,
) -> list[str]:
    """Return the ``ssh -R`` command keeping ``remote_port`` on the target open to us."""
    user, host, port = parse_target(target)
    argv = [
        "ssh", "-T", "-p", str(port),
        "-R", f"127.0.0.1:{remote_port}:{local_address}:{local_port}",
        # Fail fast when the port is taken; notice a dead link within ~45 s; never prompt.
        "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=3", "-o", "BatchMode=yes",
    ]  # fmt: skip
    if identity_file:
        argv += ["-i", identity_file, "-o", "IdentitiesOnly=yes"]
    if known_hosts:
        argv += ["-o", f"UserKnownHostsFile={known_hosts}"]
    argv.append(f"{user}@{host}" if user else host)
    # A command rather than -N: its first line says the forward is in place (ssh sets the
    # forward up before it starts the command), then it idles until the connection drops.
    argv.append(f"echo {READY}; exec tail -f /dev/null")
    return argv


def open_tunnel(argv: list[str], *, timeout: float = 30.0) -> subprocess.Popen[str]:
    """Start the tunnel and return once it is up; raise ValidationError if it fails."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != READY:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        raise ValidationError(
            f"the reverse tunnel did not open (exit {proc.returncode}): {' '.join(argv[:-1])}"
        )
    return proc


def keep_open(
    argv: list[str],
    *,
    log: Callable[[str], None],
    first: subprocess.Popen[str] | None = None,
    max_delay: float = 30.0,
) -> None:
    """Keep the tunnel up forever, restarting it with backoff whenever it ends."""
    retry = Retry(Backoff(first=1.0, factor=2.0, cap=max_delay, jitter=0.1))
    while True:
        started = time.monotonic()
        if first is not None:
            code = first.wait()
            if first.stdout is not None:
                first.stdout.close()
            first = None
        else:
            code = subprocess.call(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        if time.monotonic() - started > 60:
            retry.reset()  # it was up for a while: a fresh drop, retry soon
        delay = retry.next_delay() or 0.0
        log(f"tunnel ended (exit {code}); reconnecting in {delay:.0f}s")
        time.sleep(delay)
