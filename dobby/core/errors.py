"""The one error tree of Dobby.

::

    DobbyError                      root; every error Dobby raises on purpose
    ├── ConfigError                 bad dobby.yaml / settings value
    ├── InventoryError              bad inventory file (file, line)
    ├── ValidationError (ValueError)  bad user input (API body, CLI args)
    ├── NotFound (KeyError)         unknown task / project / host id
    ├── Conflict                    invalid state transition (cancel a finished task)
    ├── AuthError                   missing or wrong API key
    ├── Forbidden                   a request from a foreign origin or Host (browser safety)
    ├── UnsupportedMediaType        a request body that is not application/json
    ├── NoEligibleHost              no host can ever run this task
    ├── TransportError              a host could not be reached or a command failed
    │   ├── HostUnreachable         connect refused / timed out / host key / auth
    │   └── ConnectionLost          connection dropped while a command ran
    ├── DispatchError               the task bundle could not be launched on the host
    │   └── LaunchUnknown           the launch was sent but its answer lost: it may run
    ├── StorageError                the hub's database could not be written in time (503)
    └── HubError                    the hub answered a client with an error (code, status)

Each error carries a stable ``code`` used in the hub's JSON error body
``{"error": {"code": ..., "message": ...}}`` and an HTTP ``status``.
"""

from __future__ import annotations


class DobbyError(Exception):
    """Root of every error Dobby raises on purpose."""

    code = "error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(DobbyError):
    """A setting in dobby.yaml or the environment is invalid."""

    code = "config_error"
    status = 400


class InventoryError(DobbyError):
    """An inventory file is malformed; the message starts with ``file:line:``."""

    code = "inventory_error"
    status = 400

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        prefix = ""
        if file is not None:
            prefix = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(prefix + message)
        self.file = file
        self.line = line
        self.reason = message


class ValidationError(DobbyError, ValueError):
    """User input is invalid."""

    code = "bad_request"
    status = 400


class NotFound(DobbyError, KeyError):
    """An id or name does not exist."""

    code = "not_found"
    status = 404

    def __str__(self) -> str:  # KeyError would add quotes
        return self.message


class Conflict(DobbyError):
    """The request is valid but not in the object's current state."""

    code = "conflict"
    status = 409


class AuthError(DobbyError):
    """The API key is missing or wrong."""

    code = "unauthorized"
    status = 401


class Forbidden(DobbyError):
    """The request came from a web page on another origin, or names another Host."""

    code = "forbidden"
    status = 403


class UnsupportedMediaType(DobbyError):
    """A request body is not ``application/json``."""

    code = "unsupported_media_type"
    status = 415


class NoEligibleHost(DobbyError):
    """No host in the inventory can run the task."""

    code = "no_eligible_host"
    status = 400


class TransportError(DobbyError):
    """A host could not be reached, or a command on it failed."""

    code = "transport_error"
    status = 502

    def __init__(self, message: str, *, host: str | None = None) -> None:
        super().__init__(f"{host}: {message}" if host else message)
        self.host = host


class HostUnreachable(TransportError):
    """Connecting to a host failed (refused, timeout, host key, auth)."""

    code = "host_unreachable"


class ConnectionLost(TransportError):
    """The connection dropped while a command was running."""

    code = "connection_lost"


class DispatchError(DobbyError):
    """The task bundle could not be written or launched on its host."""

    code = "dispatch_error"
    status = 502


class LaunchUnknown(DispatchError):
    """The launch command reached the host but its outcome is unknown: it may have started."""

    code = "launch_unknown"


class StorageError(DobbyError):
    """The hub could not write its database (disk full, I/O error) within its time bound."""

    code = "storage_unavailable"
    status = 503


class HubError(DobbyError):
    """The hub answered a client request with an error."""

    def __init__(self, message: str, *, code: str = "error", status: int = 500) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
