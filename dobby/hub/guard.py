"""Browser safety: which Host names and Origins the hub answers, and what bodies it reads.

A web page on another origin can make the user's browser send requests to the hub, and a page
on a name the attacker controls can rebind that name to 127.0.0.1 (DNS rebinding). The hub
therefore, on every request and with or without an API key:

- answers only Host names that are its own: any IP literal (rebinding needs a name), loopback
  names, the bind address, the host of ``hub_url``, this machine's host name and the
  ``allowed_hosts`` setting (``*`` turns the check off, e.g. behind a proxy that checks it);
- refuses a request a page on a foreign origin sent: ``Origin`` must be the hub's own (the
  Host it was reached under, ``hub_url``'s origin or one in ``allowed_origins``); without an
  ``Origin``, ``Sec-Fetch-Site: cross-site|same-site`` is refused. State-changing methods are
  always checked; reads too, unless they are a navigation (a link to the hub is fine);
- reads a body only if it is ``Content-Type: application/json`` (415 otherwise): a form or a
  ``text/plain`` fetch, which browsers send cross-origin without asking, never reaches a route.

The hub sends no CORS headers, so no other origin can read an answer either.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from dobby.core.errors import Forbidden, UnsupportedMediaType

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})
DEFAULT_PORTS = {"http": 80, "https": 443}
JSON_TYPE = "application/json"
# Query parameters whose values never reach the access log (a key pasted into a URL).
SECRET_QUERY = re.compile(r"([?&](?:key|api_key|apikey|token|access_token)=)[^&#\s]*", re.I)


def host_name(host: str) -> str:
    """Return the name part of a Host header value, lower case, without port or final dot."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8420
        return host[1 : host.find("]")] if "]" in host else ""
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def host_port(host: str, scheme: str) -> tuple[str, int]:
    """Return (name, port) of a Host header value; a missing port is the scheme's default."""
    name = host_name(host)
    tail = host.strip().rpartition("]")[2] if host.strip().startswith("[") else host
    port_text = tail.rpartition(":")[2] if tail.count(":") == 1 else ""
    digits = port_text.isascii() and port_text.isdigit()  # "²" is a digit int() refuses
    port = int(port_text) if digits else DEFAULT_PORTS.get(scheme, 80)
    return name, port


def origin_key(origin: str) -> tuple[str, str, int] | None:
    """Return (scheme, name, port) of an Origin (or URL); None if it is not http(s)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    name = parts.hostname.lower().rstrip(".")
    return scheme, name, port or DEFAULT_PORTS[scheme]


@functools.lru_cache(maxsize=256)  # every request's Host: parsing it costs ~10 us
def is_ip(name: str) -> bool:
    """Tell whether ``name`` is an IPv4 or IPv6 literal."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, kw_only=True)
class Guard:
    """The hub's own names and origins, and the checks every request passes."""

    names: frozenset[str]
    origins: frozenset[tuple[str, str, int]]
    any_host: bool = False

    @classmethod
    def build(
        cls,
        *,
        bind: str,
        hub_url: str,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
    ) -> Guard:
        """Return the guard of a hub bound to ``bind`` and reached at ``hub_url``."""
        names = set(LOOPBACK_NAMES)
        if bind.strip().lower() not in WILDCARD_BINDS:
            names.add(host_name(bind))
        url = origin_key(hub_url)
        if url is not None:
            names.add(url[1])
        names.add(socket.gethostname().lower())  # no lookup: rebinding cannot take this name
        hosts = [h.strip().lower().rstrip(".") for h in allowed_hosts if h.strip()]
        names.update(h for h in hosts if h != "*")
        origins = {key for o in allowed_origins if (key := origin_key(o)) is not None}
        if url is not None:
            origins.add(url)
        return cls(names=frozenset(names), origins=frozenset(origins), any_host="*" in hosts)

    def host_allowed(self, host: str) -> bool:
        """Tell whether a request's Host header names this hub."""
        if self.any_host:
            return True
        name = host_name(host)
        if not name:
            return False
        return name in self.names or name.endswith(".localhost") or is_ip(name)

    def origin_allowed(self, origin: str, *, host: str) -> bool:
        """Tell whether a page on ``origin`` may use the hub reached as ``host``."""
        key = origin_key(origin)
        if key is None:
            return False  # "null" (sandboxed frames, file:), or not a web origin at all
        if key in self.origins:
            return True
        # Same origin: the page came from this hub, under the name the request uses now. The
        # scheme is not compared: behind a TLS proxy the hub itself speaks plain http.
        return key[1:] == host_port(host, key[0])

    def foreign(self, headers: Mapping[str, str], *, host: str) -> str | None:
        """Return why a browser sent this request for a page on another site, or None."""
        origin = headers.get("Origin")
        if origin is not None:
            if self.origin_allowed(origin, host=host):
                return None
            return f"Origin {origin[:100]!r} is not this hub's"
        site = headers.get("Sec-Fetch-Site", "").lower()
        if site in ("cross-site", "same-site"):
            return f"Sec-Fetch-Site: {site}"
        return None

    def check(
        self,
        *,
        method: str,
        headers: Mapping[str, str],
        host: str,
    ) -> None:
        """Raise Forbidden for a request with a foreign Host, or sent by a foreign page."""
        self.check_host(host)
        navigation = headers.get("Sec-Fetch-Mode", "").lower() == "navigate"
        if method.upper() not in SAFE_METHODS or not navigation:
            why = self.foreign(headers, host=host)
            if why is not None:
                raise Forbidden(
                    f"cross-origin request refused ({why}); pages on other origins cannot use "
                    "the hub (add the origin to allowed_origins if it serves the dashboard)"
                )

    def check_host(self, host: str) -> None:
        """Raise Forbidden unless ``host`` (a Host header value) names this hub."""
        if not self.host_allowed(host):
            raise Forbidden(
                f"Host {host[:100]!r} is not a name of this hub (DNS rebinding?); "
                "add it to allowed_hosts if you reach the hub under that name"
            )


def check_json_body(content_type: str | None) -> None:
    """Raise UnsupportedMediaType unless a body's Content-Type is application/json."""
    media = (content_type or "").partition(";")[0].strip().lower()
    if media != JSON_TYPE:
        got = f"got {content_type[:60]!r}" if content_type else "got none"
        raise UnsupportedMediaType(
            f"request body must be JSON: send Content-Type: {JSON_TYPE} ({got})"
        )


def redact_uri(uri: str) -> str:
    """Return ``uri`` with the values of key-like query parameters replaced by ``***``."""
    return SECRET_QUERY.sub(r"\1***", uri)
