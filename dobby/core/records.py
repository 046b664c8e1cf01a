"""The shape of a task record, generated from the :class:`~dobby.core.models.Task` dataclass.

One model serves two jobs: it validates imported task documents (``POST /import``) with the
same field checks a submit uses, and its JSON schema is the Task answer of /openapi.json. The
field list is never written twice: it is read from ``Task``; only the checks that differ from
the annotation's type are named here.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Annotated, Any

import pydantic
from pydantic import ConfigDict, Field, ValidationInfo

from dobby.core.errors import ValidationError
from dobby.core.fields import (
    MAX_PROMPT_BYTES,
    Backend,
    FixAttempts,
    Globs,
    Gpus,
    Names,
    PriorityName,
    Shape,
    Text,
    Timeout,
    VerifyCommand,
    VerifyTimeout,
    before,
    bounds,
    check_prompt_size,
    choice,
    show,
)
from dobby.core.models import Reason, Task, TaskStatus, Tokens, parse_time

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_COST = 1e9  # USD: a bound, so no record holds an absurd or non-finite cost
MAX_COUNT = 2**62  # tokens, attempts: any real count is far below


def _time(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    try:
        parse_time(value)
    except (TypeError, ValueError, AttributeError):
        raise ValidationError(
            f"'{info.field_name}' must be an ISO-8601 time like 2026-01-31T12:00:00Z, "
            f"got {show(value)}"
        ) from None
    return value


def _count(value: Any, info: ValidationInfo) -> Any:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT
    if value is not None and not ok:
        raise ValidationError(f"'{info.field_name}' must be an integer >= 0, got {show(value)}")
    return value


def _integer(value: Any, info: ValidationInfo) -> Any:
    ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_COUNT
    if value is not None and not ok:
        raise ValidationError(f"'{info.field_name}' must be an integer, got {show(value)}")
    return value


def _cost(value: Any, info: ValidationInfo) -> Any:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= MAX_COST
    )
    if value is not None and not ok:
        raise ValidationError(
            f"'{info.field_name}' must be a finite number >= 0 and <= {MAX_COST:.0f}, "
            f"got {show(value)}"
        )
    return value


def _flag(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, bool):
        raise ValidationError(f"'{info.field_name}' must be true or false, got {show(value)}")
    return value


def _id(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, str) or not re.match(ID_PATTERN, value):
        raise ValidationError(f"invalid id {show(value)}")
    return value


def _prompt(value: Any, info: ValidationInfo) -> Any:
    # As a submit's, except empty: a record is history (a session may have had none).
    if not isinstance(value, str):
        raise ValidationError(f"'prompt' must be a string, not {type(value).__name__}")
    check_prompt_size(value)
    return value


def _status(value: Any, info: ValidationInfo) -> Any:
    if value not in tuple(TaskStatus):
        raise ValidationError(f"unknown status {show(value)} (choose {', '.join(TaskStatus)})")
    return value


Time = Annotated[str, before(_time, str), Field(json_schema_extra={"format": "date-time"})]
Count = Annotated[int, before(_count, int), bounds(minimum=0, maximum=MAX_COUNT)]
Integer = Annotated[int, before(_integer, int)]
Cost = Annotated[float, before(_cost, float), bounds(minimum=0, maximum=MAX_COST)]
Bool = Annotated[bool, before(_flag, bool)]
Status = Annotated[TaskStatus, before(_status, TaskStatus)]
RecordPrompt = Annotated[str, before(_prompt, str), Field(max_length=MAX_PROMPT_BYTES)]
ReasonName = Annotated[Reason, before(choice(tuple(Reason)), Reason)]
Id = Annotated[str, before(_id, str), Field(json_schema_extra={"pattern": ID_PATTERN})]


class TokenCounts(Shape):
    """Tokens a task's agent used."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    input: Count = 0
    output: Count = 0
    cache_read: Count = 0
    cache_write: Count = 0


# Fields whose check is the submit's (or stricter than their annotation's type).
_SPECIAL: dict[str, Any] = {
    "id": Id,
    "prompt": RecordPrompt,
    "backend": Backend,
    "priority": PriorityName,
    "status": Status,
    "reason": ReasonName | None,
    "timeout": Timeout | None,
    "host_selector": Names,
    "after": Names,
    "artifact_globs": Globs,
    "gpus": Gpus,
    "tokens": TokenCounts,
    "attempt": Count,
    "verify": VerifyCommand | None,
    "verify_timeout": VerifyTimeout | None,
    "fix_attempts": FixAttempts,
    "fix_round": Count,
    "race_slot": Count | None,
}


def _field_type(name: str, hint: Any) -> Any:
    """Return the checked type of one Task field, from its name and annotation."""
    if name in _SPECIAL:
        return _SPECIAL[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = isinstance(hint, types.UnionType) and len(args) == 1
    base = args[0] if optional else hint
    origin = typing.get_origin(base) or base
    if name.endswith(("_at", "_since")):
        kind: Any = Time
    elif origin is str:
        kind = Text
    elif origin is bool:
        kind = Bool
    elif origin is int:
        kind = Integer
    elif origin is float:
        kind = Cost
    elif origin is list and typing.get_args(base) == (str,):
        kind = list[Text]
    elif origin is list and typing.get_args(base) == (int,):
        kind = list[Count]
    else:
        kind = base  # dicts and lists of dicts: their text is checked by Shape
    return kind | None if optional else kind


def _record_fields() -> dict[str, Any]:
    hints = typing.get_type_hints(Task)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(Task):
        kind = _field_type(f.name, hints[f.name])
        if f.default is not dataclasses.MISSING:
            out[f.name] = (kind, f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = (kind, Field(default_factory=f.default_factory))
        else:
            out[f.name] = (kind, ...)
    return out


class _RecordBase(Shape):
    """A stored or exported task; keys a newer or older Dobby wrote are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


TaskRecord: type[_RecordBase] = pydantic.create_model(  # type: ignore[call-overload]
    "Task",
    __base__=_RecordBase,
    __doc__=Task.__doc__,
    **_record_fields(),
)


def check_record(doc: Any) -> Task:
    """Return the Task of a task document, or raise ValidationError naming the bad field."""
    if not isinstance(doc, dict):
        raise ValidationError("not a JSON object")
    try:
        record = TaskRecord.model_validate(doc)
    except pydantic.ValidationError as exc:
        raise ValidationError(TaskRecord.explain(exc)) from None
    values = {name: getattr(record, name) for name in record.model_fields_set}
    if "tokens" in values:
        values["tokens"] = Tokens(**values["tokens"].model_dump())
    return Task(**values)


class TaskExport(pydantic.RootModel[list[TaskRecord]]):  # type: ignore[valid-type]
    """A JSON export: an array of tasks, one per line (``dobby export --format json``)."""


class TaskExportObject(Shape):
    """A JSON export wrapped in an object."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    tasks: list[TaskRecord]  # type: ignore[valid-type]
