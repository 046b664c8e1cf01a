"""File descriptors of Dobby's servers: as many as the system lets the hub have, and a
listener (the hub's, the Slack bot's HTTP endpoint's) that waits when there are none left
instead of failing in a loop.

A hub holds a descriptor per host connection, per client connection, per followed task with
output (its log copy, dobby.store.tasklog.LogWriter) and a few of its own: 1,000 chatty tasks
over 100 hosts need over 1,100, past the soft limit most systems start processes with (1,024;
the hard limit is usually far higher, 524,288 under systemd). Out of descriptors, tornado's
accept handler raised EMFILE for every connection waiting: the listening socket stayed
readable and asyncio ran the handler again at once, each time logging a traceback — 100% of
a core and 4 MB of log a second (12 MB in 3 s with 3 clients waiting), filling the disk the
hub's own state lives on.
"""

from __future__ import annotations

import errno
import logging
import resource
import socket
from typing import Any

import tornado.ioloop

log = logging.getLogger("dobby.hub")

# Below this the hub says so at its start: a few hundred followed tasks could exhaust it.
FEW_DESCRIPTORS = 4096
# Seconds the listener stops accepting once out of descriptors: the connections wait in the
# listen backlog meanwhile, and are accepted once descriptors are free again (a log copy
# closed with its task, a client gone).
ACCEPT_PAUSE = 0.5
# accept(2) failures that are the process's or the system's lack of resources, not the
# connection's: every waiting connection would fail the same way until something is freed.
OUT_OF = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# ...and what each is out of, as the warning names it (ENFILE: the system's whole file table,
# which root never meets; ENOBUFS/ENOMEM: the kernel's memory for a socket).
SHORT_OF = {errno.ENOBUFS: "memory", errno.ENOMEM: "memory"}


def raise_limit() -> int:
    """Raise the soft limit on open descriptors to the hard one; return the limit in force.

    Says at warning level when it stays below FEW_DESCRIPTORS (`ulimit -n`, or LimitNOFILE=
    in a systemd unit, raises the hard limit).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        # Linux refuses an infinite descriptor limit: the kernel's ceiling stands in for it.
        target = hard if hard != resource.RLIM_INFINITY else _kernel_ceiling(soft)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    if soft < FEW_DESCRIPTORS:
        log.warning(
            "the hub may open %d files at most (hard limit %s): a few hundred running tasks "
            "can use them all; raise it (`ulimit -Hn`, LimitNOFILE= in a systemd unit)",
            soft,
            "unlimited" if hard == resource.RLIM_INFINITY else hard,
        )
    return soft


def _kernel_ceiling(soft: int) -> int:
    try:
        with open("/proc/sys/fs/nr_open") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return soft


class Listener(socket.socket):
    """A listening socket that pauses accepting while the hub is out of descriptors.

    Tornado's accept handler takes BlockingIOError for "nothing more to accept": that is what
    it gets then, and the socket leaves the event loop for ACCEPT_PAUSE seconds (the hub goes
    on serving the connections it has). One warning per shortage, one line when it is over.
    """

    _paused = False
    _short = False  # a shortage was said, and connections have waited since
    who = "the hub"  # the server its lines name

    @classmethod
    def wrap(cls, sock: socket.socket, who: str = "the hub") -> Listener:
        """Return ``sock`` (a bound, listening socket) as a Listener; ``sock`` is detached.

        ``who``: the server, as its log lines name it.
        """
        listener = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        listener.setblocking(False)
        listener.who = who
        return listener

    def accept(self) -> tuple[socket.socket, Any]:
        try:
            return super().accept()
        except BlockingIOError:
            # Nobody waits any more: what waited through the shortage was accepted.
            if self._short:
                self._short = False
                log.warning("%s accepts connections again", self.who)
            raise
        except OSError as exc:
            if exc.errno not in OUT_OF:
                raise
            self._pause(exc)
            raise BlockingIOError(errno.EAGAIN, "paused") from exc

    def _pause(self, exc: OSError) -> None:
        if not self._short:
            self._short = True
            log.warning(
                "%s is out of %s (%s): new connections wait %gs at a time "
                "until there is room again",
                self.who,
                SHORT_OF.get(exc.errno or 0, "file descriptors"),
                exc.strerror or exc,
                ACCEPT_PAUSE,
            )
        if self._paused:
            return
        loop = tornado.ioloop.IOLoop.current()
        self._paused = True
        loop.update_handler(self.fileno(), 0)  # off the loop: no wake for every waiting client
        loop.call_later(ACCEPT_PAUSE, self._resume, loop)

    def _resume(self, loop: tornado.ioloop.IOLoop) -> None:
        self._paused = False
        if self.fileno() != -1:  # not closed by the hub's stop meanwhile
            loop.update_handler(self.fileno(), tornado.ioloop.IOLoop.READ)
