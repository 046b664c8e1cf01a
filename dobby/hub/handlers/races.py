"""Routes of races: start one, list them, compare its attempts, cancel it, merge its winner."""

from __future__ import annotations

from dobby.hub.base import BaseHandler, int_arg


class RacesHandler(BaseHandler):
    def get(self) -> None:
        self.send({"races": self.dobby.races.recent(limit=int_arg(self, "limit"))})

    async def post(self) -> None:
        race = self.dobby.races.create(self.body_json())
        await self.send_durable(self.dobby.races.view(race.id), 201)


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
