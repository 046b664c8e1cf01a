"""The Slack bot: Bolt listeners for mentions, ✅/❌ reactions and thread-reply edits.

Everything goes through the hub's HTTP API (:class:`HubClient`); every failure — hub down,
unknown project, a Slack API error, rate limiting — is answered in the user's thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from dobby.client.http import HubClient
from dobby.core.errors import HubError
from dobby.integrations.slack.commands import HELP, run_command, task_link
from dobby.integrations.slack.dedupe import SeenEvents, dedupe_middleware
from dobby.integrations.slack.notify import Notifier, Thread
from dobby.integrations.slack.parser import Catalog, clean_text, parse_mention
from dobby.integrations.slack.preview import (
    CANCEL,
    CONFIRM,
    Draft,
    Drafts,
    apply_edit,
    problem_text,
)
from dobby.integrations.slack.preview import render_preview as render

log = logging.getLogger(__name__)
CATALOG_TTL = 30.0


@dataclass(frozen=True)
class SlackSettings:
    """How the bot reaches Slack and who may confirm; read from the environment."""

    bot_token: str = ""
    app_token: str | None = None  # Socket Mode (xapp-…)
    signing_secret: str | None = None  # HTTP Events mode
    admins: frozenset[str] = frozenset()  # user ids that may confirm anyone's preview
    aliases: Mapping[str, str] = field(default_factory=dict)  # alias -> project
    hub_url: str | None = None  # base of dashboard links (default: the hub's URL)
    api_url: str | None = None  # Slack Web API base URL (default https://slack.com/api/)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SlackSettings:
        """Read SLACK_BOT_TOKEN, SLACK_APP_TOKEN, SLACK_SIGNING_SECRET, SLACK_ADMINS…"""
        env = os.environ if environ is None else environ
        aliases = {}
        for pair in env.get("SLACK_PROJECT_ALIASES", "").split(","):
            alias, sep, project = pair.partition("=")
            if sep and alias.strip() and project.strip():
                aliases[alias.strip()] = project.strip()
        return cls(
            bot_token=env.get("SLACK_BOT_TOKEN", ""),
            app_token=env.get("SLACK_APP_TOKEN") or None,
            signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
            admins=frozenset(
                a.strip() for a in env.get("SLACK_ADMINS", "").split(",") if a.strip()
            ),
            aliases=aliases,
            hub_url=env.get("DOBBY_HUB_URL") or None,
            api_url=env.get("SLACK_API_URL") or None,
        )


def slack_error_text(exc: SlackApiError) -> str:
    """Describe a Slack API error for a thread reply: method, error code, Retry-After."""
    resp = exc.response
    error = resp.get("error") if resp is not None else None
    method = str(getattr(resp, "api_url", "") or "").rstrip("/").rpartition("/")[2] or "?"
    text = f"Slack API error on `{method}`: {error or exc}"
    headers = getattr(resp, "headers", None) or {}
    retry_after = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if isinstance(retry_after, list):  # the sync client keeps header values as lists
        retry_after = retry_after[0] if retry_after else None
    if getattr(resp, "status_code", None) == 429 or error == "ratelimited":
        text = f"Slack is rate-limiting `{method}`"
        if retry_after:
            text += f" (retry after {retry_after}s)"
    return text


class Bot:
    """The bot's behaviour, independent of how events arrive (HTTP or Socket Mode)."""

    def __init__(
        self, *, hub: HubClient, client: WebClient, settings: SlackSettings, notifier: Notifier
    ) -> None:
        self.hub = hub
        self.client = client
        self.settings = settings
        self.notifier = notifier
        self.hub_url = settings.hub_url or hub.url
        self.drafts = Drafts()
        self._catalog: tuple[float, Catalog] | None = None
        self._lock = threading.Lock()
        self._requesters: dict[str, str] = {}  # task id -> who asked for it in Slack
        # (channel, notification ts) -> (draft id, thread ts): ✅/❌ there approve or reject.
        self._approvals: dict[tuple[str, str], tuple[str, str]] = {}
        notifier.on_waiting = self.approval_requested

    # -- helpers -------------------------------------------------------------------------

    def catalog(self, *, fresh: bool = False) -> Catalog:
        """Return the hub's projects, hosts and labels (cached for a few seconds)."""
        with self._lock:
            cached = self._catalog
            if not fresh and cached and time.monotonic() - cached[0] < CATALOG_TTL:
                return cached[1]
        projects = [p["name"] for p in self.hub.projects().get("projects") or []]
        hosts = self.hub.hosts().get("hosts") or []
        labels = sorted({label for h in hosts for label in h.get("labels") or []})
        catalog = Catalog(
            projects=tuple(projects),
            hosts=tuple(h["name"] for h in hosts),
            labels=tuple(labels),
            aliases=dict(self.settings.aliases),
        )
        with self._lock:
            self._catalog = (time.monotonic(), catalog)
        return catalog

    def post(self, where: Thread, text: str) -> str | None:
        """Reply in a thread; return the new message's ts."""
        resp = self.client.chat_postMessage(
            channel=where.channel, thread_ts=where.thread_ts, text=text, unfurl_links=False
        )
        return resp.get("ts")

    def post_safely(self, where: Thread, text: str) -> None:
        """Reply in a thread; a failure here is logged, as there is nowhere left to answer."""
        try:
            self.post(where, text)
        except SlackApiError as exc:
            log.error("could not reply in %s/%s: %s", where.channel, where.thread_ts, exc)

    @contextmanager
    def answering(self, where: Thread) -> Iterator[None]:
        """Turn any failure inside the block into a reply in the thread."""
        try:
            yield
        except HubError as exc:
            log.info("hub error answered in Slack: %s", exc)
            self.post_safely(where, f":warning: Hub error: {exc}")
        except SlackApiError as exc:
            log.warning("Slack API error: %s", exc)
            self.post_safely(where, f":warning: {slack_error_text(exc)}")
        except Exception as exc:
            log.exception("Slack event failed")
            self.post_safely(where, f":warning: Internal error: {type(exc).__name__}: {exc}")

    def may_confirm(self, user: str | None, draft: Draft) -> bool:
        """Return True for the requester and configured admins."""
        return bool(user) and (user == draft.requester or user in self.settings.admins)

    def _update(self, draft: Draft, text: str | None = None) -> None:
        self.client.chat_update(
            channel=draft.channel, ts=draft.preview_ts or "", text=text or render(draft)
        )

    def _offer_reactions(self, channel: str, ts: str) -> None:
        """Add ✅ and ❌ to a message so the requester has one click to make."""
        for name in ("white_check_mark", "x"):
            try:
                self.client.reactions_add(channel=channel, timestamp=ts, name=name)
            except SlackApiError as exc:
                if (exc.response or {}).get("error") != "already_reacted":
                    raise

    def approval_requested(self, where: Thread, ts: str, task: dict[str, Any]) -> None:
        """Let ✅/❌ on the notification ``ts`` approve or reject the draft it announces."""
        with self._lock:
            self._approvals[(where.channel, ts)] = (str(task["id"]), where.thread_ts)
        with self.answering(where):
            self._offer_reactions(where.channel, ts)

    def _on_approval(self, task_id: str, name: str, user: str, where: Thread, ts: str) -> None:
        """Approve (✅) or reject (❌) a draft from its notification."""
        requester = self._requesters.get(task_id)
        if not (user == requester or user in self.settings.admins):
            who = f"<@{requester}> (who asked)" if requester else "the requester"
            self.post(where, f":no_entry: <@{user}>, only {who} or an admin can approve this.")
            return
        if name in CONFIRM:
            task = self.hub.approve(task_id)
            verb = "approved it; it is queued"
        else:
            task = self.hub.reject(task_id)
            verb = "rejected it"
        with self._lock:
            self._approvals.pop((where.channel, ts), None)
            self._requesters.pop(task_id, None)
        link = task_link(self.hub_url, str(task["id"]))
        self.post(where, f"<@{user}> {verb}: {link}.")

    # -- events --------------------------------------------------------------------------

    def on_mention(self, event: Mapping[str, Any], bot_user_id: str | None) -> None:
        """Answer a command, or post a preview of the task(s) the mention asks for."""
        where = Thread(event["channel"], event.get("thread_ts") or event["ts"])
        with self.answering(where):
            text = clean_text(event.get("text") or "", bot_user_id)
            if text.lower() in ("", "help", "?"):
                self.post(where, HELP)  # help works even when the hub is down
                return
            parsed = parse_mention(text, self.catalog())
            if parsed.problems:  # maybe a project or host added since the cache was filled
                parsed = parse_mention(text, self.catalog(fresh=True))
            if parsed.command is not None:
                if parsed.problems:
                    self.post(where, "\n".join(problem_text(p) for p in parsed.problems))
                else:
                    self.post(where, run_command(parsed.command, self.hub, self.hub_url))
                return
            draft = Draft(
                requester=event.get("user") or "",
                channel=where.channel,
                thread_ts=where.thread_ts,
                tasks=parsed.tasks,
                problems=parsed.problems,
            )
            draft.preview_ts = self.post(where, render(draft))
            self.drafts.put(draft)
            if not draft.problems:
                self._offer_reactions(draft.channel, draft.preview_ts or "")

    def on_reaction(self, event: Mapping[str, Any], bot_user_id: str | None) -> None:
        """Submit (✅) or cancel (❌) the previewed task(s), for the requester or an admin."""
        item = event.get("item") or {}
        name, user = event.get("reaction"), event.get("user")
        if item.get("type") != "message" or user == bot_user_id:
            return
        if name not in CONFIRM + CANCEL:
            return
        key = (item.get("channel", ""), item.get("ts", ""))
        with self._lock:
            approving = self._approvals.get(key)
        if approving is None and self.drafts.get(*key) is None:
            # Maybe an approval request whose registration is still under way.
            with self.notifier.announcing, self._lock:
                approving = self._approvals.get(key)
        if approving is not None:
            where = Thread(key[0], approving[1])
            with self.answering(where):
                self._on_approval(approving[0], name, user or "", where, key[1])
            return
        draft = self.drafts.get(*key)
        if draft is None or draft.state != "open":
            return
        where = Thread(draft.channel, draft.thread_ts)
        with self.answering(where):
            if not self.may_confirm(user, draft):
                verb = "confirm" if name in CONFIRM else "cancel"
                self.post(
                    where,
                    f":no_entry: <@{user}>, only <@{draft.requester}> (who asked) or an admin "
                    f"can {verb} this.",
                )
                return
            if name in CANCEL:
                if self.drafts.claim(draft.channel, draft.preview_ts or ""):
                    self.drafts.finish(draft, "cancelled")
                    self._update(draft)
                return
            if draft.problems:
                questions = "\n".join(problem_text(p) for p in draft.problems)
                self.post(where, f"Not yet — answer first:\n{questions}")
                return
            if self.drafts.claim(draft.channel, draft.preview_ts or "") is None:
                return  # a second ✅ while the first is being submitted
            self._submit(draft, user or "", where)

    def _submit(self, draft: Draft, user: str, where: Thread) -> None:
        try:
            tasks = self._create(draft)
        except HubError as exc:
            self.drafts.finish(draft, "open")  # fixable: edit in the thread, ✅ again
            self.post(
                where, f":warning: Could not submit: {exc}\nEdit in this thread and ✅ again."
            )
            return
        except BaseException:
            self.drafts.finish(draft, "open")
            raise
        self.drafts.finish(draft, "submitted")
        for task in tasks:
            if task.get("status") == "draft":  # who may approve it from its notification
                with self._lock:
                    self._requesters[str(task["id"])] = draft.requester
            self.notifier.track(str(task["id"]), where)
        links = ", ".join(task_link(self.hub_url, str(t["id"])) for t in tasks)
        noun = "task" if len(tasks) == 1 else f"{len(tasks)} tasks"
        if len(tasks) == 1 and str(tasks[0]["id"]).startswith("r-"):
            noun = f"a race of {tasks[0].get('k')} attempts,"
        self._update(draft, f"{render(draft)}\n:white_check_mark: Submitted by <@{user}>: {links}")
        self.post(where, f"Submitted {noun} {links}. I'll reply here when it's done.")

    def _create(self, draft: Draft) -> list[dict[str, Any]]:
        """Create the draft's task(s) in the hub; a batch is one ``POST /batches``."""
        if len(draft.tasks) == 1:
            spec = draft.tasks[0]
            if spec.race:  # the race is tracked: its summary comes when it ends
                return [self.hub.add_race(**spec.body())]
            return [self.hub.add_task(**spec.body())]
        body = self.hub.add_batch(tasks=[t.body() for t in draft.tasks], name="slack")
        return list(body.get("tasks") or [])

    def on_message(self, event: Mapping[str, Any], bot_user_id: str | None) -> None:
        """Apply the requester's thread reply to the open preview of that thread."""
        if event.get("subtype") not in (None, "thread_broadcast") or event.get("bot_id"):
            return
        thread_ts, text = event.get("thread_ts"), event.get("text") or ""
        if not thread_ts or thread_ts == event.get("ts"):
            return
        if bot_user_id and f"<@{bot_user_id}" in text:
            return  # a mention in the thread: on_mention answers it
        draft = self.drafts.in_thread(event.get("channel", ""), thread_ts)
        if draft is None or not self.may_confirm(event.get("user"), draft):
            return
        where = Thread(draft.channel, draft.thread_ts)
        with self.answering(where):
            had_problems = bool(draft.problems)
            edited, note = apply_edit(draft, clean_text(text, bot_user_id), self.catalog())
            if note:
                self.post(where, note)
                return
            self.drafts.put(edited)
            self._update(edited)
            if had_problems and not edited.problems:
                self._offer_reactions(edited.channel, edited.preview_ts or "")


def make_web_client(token: str, base_url: str | None = None) -> WebClient:
    """Return a WebClient that waits out one rate limit (Retry-After) before giving up."""
    handlers = [ConnectionErrorRetryHandler(), RateLimitErrorRetryHandler(max_retry_count=1)]
    if base_url:
        return WebClient(token=token, base_url=base_url, retry_handlers=handlers)
    return WebClient(token=token, retry_handlers=handlers)


def build_app(
    settings: SlackSettings,
    *,
    hub: HubClient,
    client: WebClient | None = None,
    process_before_response: bool = False,
    poll_interval: float = 30.0,
) -> tuple[App, Bot]:
    """Build the Bolt app and the bot behind it (the notifier is not started here)."""
    web = client or make_web_client(settings.bot_token, settings.api_url)
    app = App(
        token=settings.bot_token,
        client=web,
        signing_secret=settings.signing_secret or "",
        # Socket Mode needs no signing secret; HTTP mode refuses to start without one.
        request_verification_enabled=bool(settings.signing_secret),
        process_before_response=process_before_response,
    )
    # After Bolt's signature check: a retried or replayed event is handled once.
    app.middleware(dedupe_middleware(SeenEvents()))

    def post(where: Thread, text: str) -> str | None:
        resp = web.chat_postMessage(
            channel=where.channel, thread_ts=where.thread_ts, text=text, unfurl_links=False
        )
        return resp.get("ts")

    hub_url = settings.hub_url or hub.url
    notifier = Notifier(hub=hub, post=post, hub_url=hub_url, poll_interval=poll_interval)
    bot = Bot(hub=hub, client=web, settings=settings, notifier=notifier)

    @app.event("app_mention")
    def _mention(event: dict[str, Any], context: dict[str, Any]) -> None:
        bot.on_mention(event, context.get("bot_user_id"))

    @app.event("reaction_added")
    def _reaction(event: dict[str, Any], context: dict[str, Any]) -> None:
        bot.on_reaction(event, context.get("bot_user_id"))

    @app.event("message")
    def _message(event: dict[str, Any], context: dict[str, Any]) -> None:
        bot.on_message(event, context.get("bot_user_id"))

    @app.event("reaction_removed")
    def _ignored() -> None:
        """Acknowledge: removing a reaction changes nothing."""

    return app, bot
