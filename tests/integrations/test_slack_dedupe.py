"""The Slack bot's memory of event ids: bounded, most recently seen kept."""

from __future__ import annotations

import pytest

from dobby.integrations.slack.dedupe import SeenEvents, event_id_of


def test_event_ids_are_remembered_in_bounded_memory() -> None:
    seen = SeenEvents(capacity=3)
    firsts = [seen.first_time(e) for e in ["a", "b", "a", "c", "d"]]
    assert firsts == [True, True, False, True, True]
    assert len(seen) == 3
    assert seen.first_time("a") is False  # seen again recently: kept
    assert seen.first_time("b") is True  # the least recently seen: forgotten
    assert len(seen) == 3


def test_event_id_of_an_envelope() -> None:
    assert event_id_of({"event_id": "Ev1"}) == "Ev1"
    assert event_id_of({"type": "url_verification"}) is None
    assert event_id_of({"event_id": 7}) is None


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SeenEvents(capacity=0)
