"""Routes of races: start one, list them, compare its attempts, cancel it, merge its winner."""

from __future__ import annotations

from typing import Any

from dobby.hub.base import BaseHandler, int_arg
from dobby.hub.idempotency import answer_once


class RacesHandler(BaseHandler):
    def get(self) -> None:
        self.send({"races": self.dobby.races.recent(limit=int_arg(self, "limit"))})

    async def post(self) -> None:
        await answer_once(self, self._start)

    def _start(self) -> tuple[int, Any]:
        race = self.dobby.races.create(self.body_json())
        return 201, self.dobby.races.view(race.id)


class RaceHandler(BaseHandler):
    def get(self, race_id: str) -> None:
        self.send(self.dobby.races.view(race_id))


class RaceCancelHandler(BaseHandler):
    async def post(self, race_id: str) -> None:
        race = await self.dobby.races.cancel(race_id)
        await self.send_durable(self.dobby.races.view(race.id))


class RaceMergeHandler(BaseHandler):
    async def post(self, race_id: str) -> None:
        self.send(await self.dobby.races.merge(race_id))
