"""Routes of results: views, detail-status, artifacts, diff/merge, stats, export/import, gc."""

from __future__ import annotations

import mimetypes
import urllib.parse

from dobby.core.errors import ValidationError
from dobby.core.shapes import GcBody, parse
from dobby.hub.base import BaseHandler, int_arg
from dobby.hub.handlers.tasks import stream_list, task_filter
from dobby.results.service import FINISHED

FILE_CHUNK = 256 << 10


class ResultsHandler(BaseHandler):
    async def get(self) -> None:
        """Results newest first: a page (?limit=&offset=), or every match streamed."""
        flt = task_filter(self, status=",".join(FINISHED))
        limit = int_arg(self, "limit")
        offset = int_arg(self, "offset", 0) or 0
        service = self.dobby.results
        total = self.dobby.store.count(flt)
        extra = {"total": total, "limit": limit, "offset": offset}
        if limit is None and not offset:
            await stream_list(self, "results", service.iter_results(flt), extra)
            return
        results = service.results(flt=flt, limit=limit, offset=offset)
        self.send({"results": results, **extra})


class ResultHandler(BaseHandler):
    def get(self, task_id: str) -> None:
        self.send(self.dobby.results.result(task_id))


class DetailStatusHandler(BaseHandler):
    def get(self, task_id: str) -> None:
        self.send(self.dobby.results.detail_status(task_id))


class ArtifactsHandler(BaseHandler):
    def get(self, task_id: str) -> None:
        self.send(self.dobby.results.artifacts(task_id))


class ArtifactHandler(BaseHandler):
    """Send one artifact as a download (never rendered by the browser: same origin as the API)."""

    async def get(self, task_id: str, name: str) -> None:
        path = self.dobby.results.artifact_file(task_id, name)
        guessed = mimetypes.guess_type(path.name)[0]
        text = guessed is not None and (guessed.startswith("text/") or guessed.endswith("json"))
        self.set_header(
            "Content-Type", "text/plain; charset=utf-8" if text else "application/octet-stream"
        )
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'")
        fallback = "".join(
            c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in path.name
        )
        quoted = urllib.parse.quote(path.name, safe="")
        self.set_header(
            "Content-Disposition", f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quoted}"
        )
        self.set_header("Content-Length", str(path.stat().st_size))
        with open(path, "rb") as fh:
            while chunk := fh.read(FILE_CHUNK):
                self.write(chunk)
                await self.flush()
        self.finish()


class DiffHandler(BaseHandler):
    async def get(self, task_id: str) -> None:
        fmt = self.get_query_argument("format", None) or "json"  # empty: as if absent
        if fmt not in ("json", "text"):
            raise ValidationError(f"invalid format {fmt!r} (choose json, text)")
        body = await self.dobby.results.diff(task_id)
        if fmt == "text":
            self.set_header("Content-Type", "text/x-diff; charset=utf-8")
            self.finish(body["diff"])
            return
        self.send(body)


class MergeHandler(BaseHandler):
    async def post(self, task_id: str) -> None:
        await self.send_durable(await self.dobby.results.merge(task_id))


class StatsHandler(BaseHandler):
    def get(self) -> None:
        self.send(
            self.dobby.results.stats(
                since=self.get_query_argument("since", None) or None,
                project=self.get_query_argument("project", None) or None,
            )
        )


class ExportHandler(BaseHandler):
    """Stream every task (filtered) as CSV or JSON."""

    async def get(self) -> None:
        fmt = self.get_query_argument("format", None) or "csv"  # empty: as if absent
        chunks = self.dobby.results.export(
            fmt=fmt,
            project=self.get_query_argument("project", None) or None,
            since=self.get_query_argument("since", None) or None,
        )
        kind = "text/csv" if fmt == "csv" else "application/json"
        self.set_header("Content-Type", f"{kind}; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="dobby-tasks.{fmt}"')
        for chunk in chunks:
            self.write(chunk.encode("utf-8", "backslashreplace"))  # an old bad record never 500s
            await self.flush()
        self.finish()


class ImportHandler(BaseHandler):
    def post(self) -> None:
        self.send(self.dobby.results.import_tasks(self.request.body or b""))


class GcHandler(BaseHandler):
    async def post(self) -> None:
        shape = parse(GcBody, self.body_json())
        report = await self.dobby.results.gc(older_than=shape.older_than, dry_run=shape.dry_run)
        await self.send_durable(report)
