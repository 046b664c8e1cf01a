"""Transports: how the hub reaches a host (``local`` or ``ssh``)."""

from __future__ import annotations

from dobby.core.errors import ValidationError
from dobby.core.models import Host
from dobby.transport.base import RunResult, Transport
from dobby.transport.local import LocalTransport
from dobby.transport.ssh import SshTransport

__all__ = ["RunResult", "Transport", "LocalTransport", "SshTransport", "make_transport"]


def make_transport(host: Host, *, tofu_known_hosts: str | None = None) -> Transport:
    """Return the transport for a host's ``connection``."""
    if host.connection == "local":
        return LocalTransport(host=host)
    if host.connection in ("ssh", "slurm"):  # a Slurm host is its login node, over ssh
        return SshTransport(host=host, tofu_known_hosts=tofu_known_hosts)
    raise ValidationError(
        f"host '{host.name}': connection '{host.connection}' is not supported yet"
    )
