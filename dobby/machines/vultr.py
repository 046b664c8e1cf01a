"""Create a Vultr instance for ``dobby deploy --provider vultr`` (Vultr's v2 REST API).

Only what a hub host needs: make sure our SSH public key is on the account, create the
instance with it, and wait until it is active with a public address. Auth is the account's
API key (``VULTR_API_KEY``) as a bearer token; ``VULTR_API_URL`` points elsewhere in tests.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dobby.core.errors import DobbyError

API_URL = "https://api.vultr.com/v2"
NO_ADDRESS = ("", "0.0.0.0")


class VultrError(DobbyError):
    """The Vultr API refused a request or the instance did not come up."""

    code = "vultr_error"
    status = 502


@dataclass(frozen=True)
class InstanceSpec:
    """What to create: Vultr's region, plan and OS ids, and a label."""

    label: str
    region: str = "ewr"
    plan: str = "vc2-1c-1gb"
    os_id: int = 2136  # Debian 12 x64


class Vultr:
    """A small synchronous client of the endpoints deploy uses."""

    def __init__(self, *, api_key: str | None = None, url: str | None = None) -> None:
        key = api_key or os.environ.get("VULTR_API_KEY")
        if not key:
            raise VultrError("set VULTR_API_KEY (Vultr account → API) to create an instance")
        self._key = key
        self.url = (url or os.environ.get("VULTR_API_URL") or API_URL).rstrip("/")
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self._key}", "Content-Type": "application/json",
            "Accept": "application/json", "User-Agent": "dobby-deploy",
        })  # fmt: skip
        try:
            with self._opener.open(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                detail = _error_text(exc.read())
            raise VultrError(f"Vultr {method} {path}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise VultrError(f"cannot reach the Vultr API at {self.url}: {exc}") from None
        return json.loads(raw) if raw else {}

    def ensure_ssh_key(self, name: str, public_key: str) -> str:
        """Return the id of ``public_key`` on the account, uploading it if it is not there."""
        wanted = " ".join(public_key.split()[:2])
        for key in self._call("GET", "/ssh-keys?per_page=500").get("ssh_keys") or []:
            if " ".join(str(key.get("ssh_key", "")).split()[:2]) == wanted:
                return str(key["id"])
        made = self._call("POST", "/ssh-keys", {"name": name, "ssh_key": public_key.strip()})
        return str(made["ssh_key"]["id"])

    def create_instance(self, spec: InstanceSpec, ssh_key_id: str) -> dict[str, Any]:
        """Create an instance with our key; return its JSON (still pending)."""
        body = {"region": spec.region, "plan": spec.plan, "os_id": spec.os_id,
                "label": spec.label, "hostname": spec.label, "sshkey_id": [ssh_key_id],
                "backups": "disabled"}  # fmt: skip
        instance: dict[str, Any] = self._call("POST", "/instances", body)["instance"]
        return instance

    def wait_active(
        self,
        instance_id: str,
        *,
        timeout: float = 900,
        every: float = 5.0,
        log: Callable[[str], None] = lambda _m: None,
    ) -> dict[str, Any]:
        """Poll the instance until it is active, running and has its address; return it."""
        deadline = time.monotonic() + timeout
        last = ""
        wait = 0.5  # quick at first (the API answers fast), then every ``every`` seconds
        while True:
            inst: dict[str, Any] = self._call("GET", f"/instances/{instance_id}")["instance"]
            state = f"{inst.get('status')}/{inst.get('power_status')}/{inst.get('server_status')}"
            if state != last:
                log(f"instance {instance_id}: {state}")
                last = state
            if (inst.get("status") == "active" and inst.get("power_status") == "running"
                    and inst.get("main_ip") not in NO_ADDRESS):  # fmt: skip
                return inst
            if time.monotonic() > deadline:
                raise VultrError(f"instance {instance_id} not ready after {timeout:.0f}s ({state})")
            time.sleep(wait)
            wait = min(every, wait * 2)


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error") or raw[:200].decode(errors="replace"))
    except (ValueError, AttributeError):
        return raw[:200].decode(errors="replace")
