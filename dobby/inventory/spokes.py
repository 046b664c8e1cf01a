"""What POST /spokes/register may say about a host: a literal address, and one host key line.

A spoke's host key is pinned in a known_hosts file of its own (``DOBBY_HOME/spoke_keys/NAME``)
that only that spoke's connections read. The address is a literal host name or IP address:
OpenSSH and asyncssh read ``*``, ``?``, ``!``, ``[...]``, commas and ``|1|`` hashes in a
known_hosts name as patterns, and a pattern would vouch for the key on other hosts too.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from dobby.core.errors import ValidationError

# One DNS label (underscores allowed, as some internal names have them), no leading '-'.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
SPOKE_NAME = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$"  # also the name's pattern in /openapi.json
_SPOKE_NAME = re.compile(SPOKE_NAME)
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
             "sk-ecdsa-sha2-nistp256@openssh.com")  # fmt: skip
_KEY_DATA = re.compile(r"[A-Za-z0-9+/]+={0,2}")
KEY_DIR = "spoke_keys"


def literal_address(value: Any) -> str:
    """Return ``value`` if it is one literal host name or IP address, else raise."""
    if not isinstance(value, str) or not value:
        raise ValidationError("'address' must be the host name or IP address of the spoke")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if len(value) > 253 or not _HOST_NAME.fullmatch(value):
        raise ValidationError(
            f"'address' must be one literal host name or IP address, got {value[:60]!r} "
            "(no patterns, brackets, ports, commas or spaces)"
        )
    return value


def spoke_name(value: Any) -> str:
    """Return ``value`` if it is a valid spoke (host) name, else raise."""
    if not isinstance(value, str) or not _SPOKE_NAME.fullmatch(value) or value.strip(".") == "":
        raise ValidationError(
            "a spoke needs a 'name' of letters, digits, '.', '_' and '-' (at most 100)"
        )
    return value


def key_line(host_key: Any) -> tuple[str, str]:
    """Return (type, base64 data) of one public host key line, else raise."""
    parts = host_key.split() if isinstance(host_key, str) else []
    if (
        len(parts) < 2
        or "\n" in host_key.strip()
        or parts[0] not in KEY_TYPES
        or not _KEY_DATA.fullmatch(parts[1])
    ):
        raise ValidationError(
            "'host_key' must be one public key line, e.g. the content of "
            "/etc/ssh/ssh_host_ed25519_key.pub"
        )
    return parts[0], parts[1]


def known_hosts_entry(address: str, port: int, host_key: Any) -> str:
    """Return the known_hosts line pinning ``host_key`` for ``address:port`` (both checked)."""
    kind, data = key_line(host_key)
    name = literal_address(address)
    if ":" in name:  # IPv6 is always written in brackets, with its port
        return f"[{name}]:{port} {kind} {data}\n"
    return f"{name} {kind} {data}\n" if port == 22 else f"[{name}]:{port} {kind} {data}\n"


def key_file(home: Path, name: str) -> Path:
    """Return the known_hosts file that holds spoke ``name``'s pinned key."""
    return home / KEY_DIR / spoke_name(name)
