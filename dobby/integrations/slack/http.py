"""Slack's HTTP Events API on Tornado: Bolt's handler, with malformed requests refused first."""

from __future__ import annotations

from slack_bolt.adapter.tornado import SlackEventsHandler


class EventsHandler(SlackEventsHandler):
    """Bolt's events handler; a request whose timestamp is not a number gets a 400."""

    def prepare(self) -> None:
        # slack_sdk's signature check calls int() on the header and would answer 500.
        stamp = self.request.headers.get("X-Slack-Request-Timestamp", "")
        if stamp and not (stamp.isascii() and stamp.isdigit()):
            self.set_status(400)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("X-Slack-Request-Timestamp must be a number of seconds")
