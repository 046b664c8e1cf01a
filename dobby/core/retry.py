"""Wait and try again: one backoff policy (exponential, capped, jittered, within a deadline).

Every retry loop of Dobby uses it — the HTTP client and its event streams, the SSH transport's
reconnects, the webhook, the reverse tunnel, the Slack notifier — so they all back off the same
way and each one's numbers are declared in one place::

    policy = Backoff(first=0.2, cap=2.0, deadline=10.0)
    value = call(fetch, policy=policy, retry_if=lambda exc: isinstance(exc, OSError))

:meth:`Backoff.delay` is a pure function of the try number (tested from a table);
:class:`Retry` adds the clock: how many tries so far, and whether the deadline has passed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """How long to wait between tries, and when to give up."""

    first: float = 0.2  # the wait after the first failure, in seconds
    factor: float = 2.0  # each wait is this many times the one before...
    cap: float = 30.0  # ...up to this many seconds
    jitter: float = 0.1  # each wait is scaled by a random factor in [1 - jitter, 1 + jitter]
    tries: int | None = None  # give up after this many tries in all (None: no limit)
    deadline: float | None = None  # give up this many seconds after the start (None: never)

    def delay(self, failures: int, *, rng: Callable[[], float] = random.random) -> float:
        """Return the wait after ``failures`` failed tries in a row (1 = the first failure)."""
        base = min(self.cap, self.first * self.factor ** max(0, failures - 1))
        # Jitter spreads clients that failed together (a hub restart) so they don't return
        # in lockstep; it never pushes a wait past the cap.
        scale = 1.0 + self.jitter * (2.0 * rng() - 1.0)
        return max(0.0, min(self.cap, base * scale))

    def delays(self, *, rng: Callable[[], float] = random.random) -> Iterator[float]:
        """Yield the successive waits (finite when ``tries`` is set; the deadline is ignored)."""
        failures = 1
        while self.tries is None or failures < self.tries:
            yield self.delay(failures, rng=rng)
            failures += 1


class Retry:
    """Count failures against a :class:`Backoff`: the next wait, or None once to give up."""

    def __init__(
        self,
        policy: Backoff,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._rng = rng
        self.failures = 0
        self.started = clock()

    def next_delay(self) -> float | None:
        """Record a failed try; return how long to wait before the next, or None to give up."""
        self.failures += 1
        policy = self.policy
        if policy.tries is not None and self.failures >= policy.tries:
            return None
        wait = policy.delay(self.failures, rng=self._rng)
        if policy.deadline is not None:
            remaining = policy.deadline - (self._clock() - self.started)
            if remaining <= 0:
                return None
            wait = min(wait, remaining)  # one last try right at the deadline
        return wait

    def reset(self) -> None:
        """Start over after a success: no failures, the deadline counted from now."""
        self.failures = 0
        self.started = self._clock()


def call(
    fn: Callable[[], T],
    *,
    policy: Backoff,
    retry_if: Callable[[BaseException], bool],
    sleep: Callable[[float], object] = time.sleep,
    on_retry: Callable[[BaseException, float], object] | None = None,
) -> T:
    """Return ``fn()``, trying again after failures ``retry_if`` accepts; re-raise the last."""
    retry = Retry(policy)
    while True:
        try:
            return fn()
        except Exception as exc:
            wait = retry.next_delay() if retry_if(exc) else None
            if wait is None:
                raise
            if on_retry is not None:
                on_retry(exc, wait)
        sleep(wait)


async def call_async(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: Backoff,
    retry_if: Callable[[BaseException], bool],
    on_retry: Callable[[BaseException, float], object] | None = None,
) -> T:
    """Return ``await fn()``, trying again after failures ``retry_if`` accepts."""
    import asyncio  # here, not at the top: the CLI imports this module and starts fast

    retry = Retry(policy)
    while True:
        try:
            return await fn()
        except Exception as exc:
            wait = retry.next_delay() if retry_if(exc) else None
            if wait is None:
                raise
            if on_retry is not None:
                on_retry(exc, wait)
        await asyncio.sleep(wait)
