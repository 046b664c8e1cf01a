"""dobby.core.retry: the one backoff policy, pure delays from a table and a fake clock."""

from __future__ import annotations

import pytest

from dobby.core.retry import Backoff, Retry, call, call_async

MIDDLE = 0.5  # rng() == 0.5 scales a wait by exactly 1


@pytest.mark.parametrize(
    "policy, waits",
    [
        (Backoff(first=0.2, factor=2.0, cap=2.0), [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]),
        (Backoff(first=1.0, factor=1.0, cap=5.0), [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
        (Backoff(first=0.5, factor=3.0, cap=10.0), [0.5, 1.5, 4.5, 10.0, 10.0, 10.0]),
    ],
)
def test_delays_grow_to_the_cap(policy: Backoff, waits: list[float]) -> None:
    got = [policy.delay(n, rng=lambda: MIDDLE) for n in range(1, 7)]
    assert got == pytest.approx(waits)


def test_jitter_stays_within_its_band_and_under_the_cap() -> None:
    policy = Backoff(first=1.0, factor=2.0, cap=3.0, jitter=0.2)
    assert policy.delay(1, rng=lambda: 0.0) == pytest.approx(0.8)
    assert policy.delay(1, rng=lambda: 1.0) == pytest.approx(1.2)
    assert policy.delay(5, rng=lambda: 1.0) == pytest.approx(3.0)  # never past the cap
    assert policy.delay(5, rng=lambda: 0.0) == pytest.approx(2.4)


def test_delays_is_finite_with_tries() -> None:
    waits = list(Backoff(first=1.0, cap=16.0, tries=6, jitter=0).delays())
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0]  # six tries: five waits between them
    assert len(list(Backoff(tries=1).delays())) == 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_retry_gives_up_at_the_deadline_and_clips_the_last_wait() -> None:
    clock = Clock()
    retry = Retry(Backoff(first=1.0, cap=4.0, jitter=0, deadline=5.0), clock=clock)
    assert retry.next_delay() == 1.0
    clock.now += 1.0
    assert retry.next_delay() == 2.0
    clock.now += 2.0
    assert retry.next_delay() == 2.0  # 4.0 wanted, 2.0 left before the deadline
    clock.now += 2.0
    assert retry.next_delay() is None
    retry.reset()  # a success: the deadline counts from now, the waits start small again
    assert retry.failures == 0 and retry.next_delay() == 1.0


def test_retry_gives_up_after_its_tries() -> None:
    retry = Retry(Backoff(first=1.0, jitter=0, tries=3))
    assert [retry.next_delay(), retry.next_delay(), retry.next_delay()] == [1.0, 2.0, None]


def test_call_retries_what_retry_if_accepts_then_succeeds() -> None:
    slept: list[float] = []
    answers = iter([OSError("reset"), OSError("reset"), "ok"])

    def flaky() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    policy = Backoff(first=0.1, jitter=0)
    retry_if = lambda exc: isinstance(exc, OSError)  # noqa: E731
    assert call(flaky, policy=policy, retry_if=retry_if, sleep=slept.append) == "ok"
    assert slept == pytest.approx([0.1, 0.2])


def test_call_reraises_the_last_failure_and_never_retries_others() -> None:
    tries: list[int] = []

    def refused() -> None:
        tries.append(1)
        raise ConnectionRefusedError("refused")

    with pytest.raises(ConnectionRefusedError):
        call(refused, policy=Backoff(tries=3), retry_if=lambda e: True, sleep=lambda s: None)
    assert len(tries) == 3
    tries.clear()
    with pytest.raises(ConnectionRefusedError):
        call(refused, policy=Backoff(tries=3), retry_if=lambda e: False, sleep=lambda s: None)
    assert len(tries) == 1


async def test_call_async_retries() -> None:
    answers = iter([TimeoutError(), 7])

    async def flaky() -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    policy = Backoff(first=0.001, cap=0.001)
    assert await call_async(flaky, policy=policy, retry_if=lambda e: True) == 7
