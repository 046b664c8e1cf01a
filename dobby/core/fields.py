"""Field types with Dobby's one-line messages, and the base of every declared shape.

Each check raises :class:`~dobby.core.errors.ValidationError` (a ValueError, so pydantic
reports it as the field's error) with the text users see: "'timeout' must be a positive number
of seconds up to …", "invalid priority 'asap' (choose …)". The ``Annotated`` types below put a
check in front of the type a field keeps, and say what a client may send (for the schema).
Numbers are finite and bounded; strings must be valid Unicode text (no lone surrogates such as
``"\\udfff"``); a prompt is at most :data:`MAX_PROMPT_BYTES`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator

from dobby.core.errors import ValidationError
from dobby.core.models import BackendName, Priority
from dobby.core.names import validate_globs
from dobby.core.timefmt import parse_duration

MAX_PROMPT_BYTES = 10 << 20  # 10 MiB: larger inputs belong in a file of the project
MAX_DEPTH = 64  # levels of nested lists/objects in a body, batch file or import
DAY = 86400.0
MAX_TIMEOUT = 30 * DAY  # a task's timeout, and a project's default_timeout
MAX_AUTO_RETRY = 10  # automatic re-queues of a task lost with its host
MAX_CONCURRENT = 1000  # a project's max_concurrent
MAX_GPUS = 64  # GPUs one task may ask for
MAX_TURNS = 10_000  # claude --max-turns
MAX_BUDGET_USD = 10_000.0  # claude --max-budget-usd, per task
MAX_OLDER_THAN = 3650 * DAY  # POST /gc older_than
MAX_VERIFY_BYTES = 65536  # a task's verify command (it reaches the host as a file)
MAX_FIX_ATTEMPTS = 10  # fix rounds after a failed check
BUDGET_WINDOWS = ("day", "week", "month")  # spend caps (a project's or the hub's budget_usd)
MAX_BUDGET_CAP = 1e9  # USD: a spend cap is finite and bounded
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")

S = TypeVar("S", bound="Shape")


# -- text ----------------------------------------------------------------------------------------


def text_problem(value: Any, where: str = "") -> str | None:
    """Return why ``value`` (or a string inside it) is not valid Unicode text, or None.

    Also refuses nesting deeper than :data:`MAX_DEPTH`. JSON and YAML can spell lone
    surrogates (``"\\udfff"``); Python keeps them in ``str``, and they fail later when the text
    is encoded as UTF-8 (an answer, a log line, a file).
    """
    if _all_text(value):
        return None  # the common case, without the key paths only a message needs
    # A loop, not recursion; the depth is bounded here, not by the interpreter's recursion
    # limit (which a process may have raised, letting json.loads through 5000 levels).
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            problem = _string_problem(item, path)
            if problem:
                return problem
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                return f"nested too deeply (more than {MAX_DEPTH} levels)"
            if isinstance(item, dict):
                for key, child in reversed(item.items()):
                    stack.append((child, _join(path, key), depth + 1))
                    stack.append((key, path, depth + 1))
            else:
                children = reversed(list(enumerate(item)))
                stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in children)
    return None


def _all_text(value: Any) -> bool:
    """Return True if every string in ``value`` is valid text and it nests at most MAX_DEPTH.

    The same walk as :func:`text_problem` without building a key path per value: every body,
    batch entry and task is checked (a 1,000-task batch three times), and paths are only
    needed to name a problem.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        kind = item.__class__
        if kind is str:
            if not item.isascii() and _string_problem(item, ""):
                return False
        elif kind is dict or kind is list or kind is tuple or isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                return False
            if isinstance(item, dict):
                for key, child in item.items():
                    push((key, depth + 1))
                    push((child, depth + 1))
            else:
                for child in item:
                    push((child, depth + 1))
        elif isinstance(item, str) and _string_problem(item, ""):  # a str subclass
            return False
    return True


def _string_problem(text: str, where: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        name = f"'{where}'" if where else "a string"
        return (
            f"{name} is not valid UTF-8 text "
            f"(lone surrogate \\u{ord(text[exc.start]):04x} at character {exc.start})"
        )
    return None


def check_text(value: Any, where: str = "") -> None:
    """Raise ValidationError if ``value`` holds a string that is not valid Unicode text."""
    problem = text_problem(value, where)
    if problem:
        raise ValidationError(problem)


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


# -- field checks (each raises ValidationError, a ValueError, so pydantic reports it) ----------


def _name(info: ValidationInfo) -> str:
    return info.field_name or "value"


def show(value: Any) -> str:
    """Return ``value`` as a short repr for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_bool(value: Any, key: str) -> bool:
    """Return a JSON boolean, or a word like true/false/yes/no (from ``key=value`` text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValidationError(f"'{key}' must be true or false, got {show(value)}")


def as_int(value: Any, key: str, *, minimum: int, maximum: int) -> int:
    """Return an integer (or integer text) from ``minimum`` to ``maximum``.

    A float with no fraction (``3.0``) is that integer: JSON Schema's ``integer`` (what the
    API documents) includes it, and some JSON encoders write every number so.
    """
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,18}\s*", value):
        value = int(value)
    elif isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ValidationError(
            f"'{key}' must be an integer >= {minimum} and <= {maximum}, got {show(value)}"
        )
    return value


def as_seconds(value: Any, key: str, *, maximum: float = MAX_TIMEOUT) -> float:
    """Return positive, finite seconds up to ``maximum`` from a number or text (``30m``)."""
    if isinstance(value, str):
        value = parse_duration(value)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= maximum
    ):
        raise ValidationError(
            f"'{key}' must be a positive number of seconds up to {maximum:.0f} "
            f"({days(maximum)}), got {show(value)}"
        )
    return float(value)


def days(seconds: float) -> str:
    """Return seconds as days for a message (``30d``)."""
    return f"{seconds / DAY:g}d"


def str_list(value: Any, key: str) -> list[str]:
    """Return a list of non-empty strings (a single string counts as a list of one)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise ValidationError(f"'{key}' must be a list of non-empty strings")
    return list(value)


def _text(value: Any, info: ValidationInfo) -> Any:
    if value is not None and not isinstance(value, str):
        raise ValidationError(f"'{_name(info)}' must be a string, not {type(value).__name__}")
    return value


def choice(choices: tuple[str, ...]) -> Callable[[Any, ValidationInfo], Any]:
    """Return a check: one of ``choices``, or "invalid KEY 'x' (choose …)"."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return None
        _text(value, info)
        if value not in choices:
            raise ValidationError(f"invalid {_name(info)} '{value}' (choose {', '.join(choices)})")
        return value

    return check


def to_bool(value: Any, info: ValidationInfo) -> Any:
    """Check a boolean field (None passes: the field is optional)."""
    return None if value is None else as_bool(value, _name(info))


def ints(minimum: int, maximum: int) -> Callable[[Any, ValidationInfo], Any]:
    """Return a check: an integer (or its text) from ``minimum`` to ``maximum``."""

    def check(value: Any, info: ValidationInfo) -> Any:
        return None if value is None else as_int(value, _name(info), minimum=minimum,
                                                 maximum=maximum)  # fmt: skip

    return check


def bounded_seconds(maximum: float) -> Callable[[Any, ValidationInfo], Any]:
    """Return a check: positive finite seconds (or a duration) up to ``maximum``."""

    def check(value: Any, info: ValidationInfo) -> Any:
        return None if value is None else as_seconds(value, _name(info), maximum=maximum)

    return check


def _list(value: Any, info: ValidationInfo) -> Any:
    return str_list(value, _name(info))


def _prompt(value: Any, info: ValidationInfo) -> Any:
    _text(value, info)
    if value is None:
        return None
    if not value.strip():
        raise ValidationError(f"'{_name(info)}' must not be empty")
    if "\x00" in value:
        raise ValidationError(f"'{_name(info)}' must not contain NUL bytes")
    check_prompt_size(value, _name(info))
    return value


def check_prompt_size(prompt: str, key: str = "prompt") -> None:
    """Refuse a prompt larger than :data:`MAX_PROMPT_BYTES` (UTF-8) with its size."""
    # Four bytes per character at most: only long prompts pay for the exact count.
    if len(prompt) * 4 <= MAX_PROMPT_BYTES:
        return
    size = len(prompt.encode("utf-8", "surrogatepass"))
    if size > MAX_PROMPT_BYTES:
        raise ValidationError(
            f"'{key}' is {size / (1 << 20):.1f} MiB; the limit is {MAX_PROMPT_BYTES >> 20} MiB "
            f"({MAX_PROMPT_BYTES} bytes): put large inputs in a file of the project and "
            "refer to it"
        )


def _usd(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0 < value <= MAX_BUDGET_USD:
        raise ValidationError(
            f"'{_name(info)}' must be a number of USD > 0 and <= {MAX_BUDGET_USD:.0f}, "
            f"got {show(value)}"
        )
    return float(value)


def check_verify_command(command: str, key: str = "verify") -> str:
    """Return a verify command if it can reach a host as a file; refuse NULs and huge ones."""
    if "\x00" in command:
        raise ValidationError(f"'{key}' must not contain NUL bytes")
    if len(command.encode("utf-8", "surrogatepass")) > MAX_VERIFY_BYTES:
        raise ValidationError(
            f"'{key}' is longer than {MAX_VERIFY_BYTES} bytes: put the check in a script "
            "in the project and run that"
        )
    return command


def _verify(value: Any, info: ValidationInfo) -> Any:
    # "" (or blanks) says "no check", even where the project has a default_verify.
    _text(value, info)
    if value is None:
        return None
    return check_verify_command(value, _name(info)) if value.strip() else ""


def verify_command(value: Any, info: ValidationInfo) -> Any:
    """Check a verify command given as a policy (any text; ``policy`` handles unset)."""
    return check_verify_command(str(value), _name(info))


def _verify_timeout(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    try:
        return as_seconds(value, _name(info))
    except ValidationError as exc:
        message = str(exc)  # a duration's own error does not name the field
        if f"'{_name(info)}'" in message:
            raise
        raise ValidationError(f"'{_name(info)}': {message}") from None


def _fix_attempts(value: Any, info: ValidationInfo) -> Any:
    if value is None:
        return None
    try:
        return as_int(value, _name(info), minimum=0, maximum=MAX_FIX_ATTEMPTS)
    except ValidationError as exc:
        error = exc
    try:
        count = as_int(value, _name(info), minimum=MAX_FIX_ATTEMPTS + 1, maximum=2**53)
    except ValidationError:
        raise error from None
    raise ValidationError(f"'{_name(info)}' must be at most {MAX_FIX_ATTEMPTS}, got {count}")


def check_budget(value: Any, where: str) -> dict[str, float]:
    """Return spend caps ``{day|week|month: USD > 0}`` from a mapping or ``day:20,month:300``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValidationError(f"{where} is not valid JSON: {text[:60]!r}") from None
        else:
            pairs = [item.partition(":") for item in text.split(",") if item.strip()]
            if any(not sep for _, sep, _ in pairs):
                raise ValidationError(f"{where} must look like day:20,month:300, got {show(text)}")
            value = {k.strip(): v.strip() for k, _, v in pairs}
    if not isinstance(value, dict):
        raise ValidationError(f"{where} must map day/week/month to USD, got {show(value)}")
    out: dict[str, float] = {}
    for window, amount in value.items():
        if window not in BUDGET_WINDOWS:
            raise ValidationError(
                f"{where}: unknown window {show(window)} (use {', '.join(BUDGET_WINDOWS)})"
            )
        if isinstance(amount, str):
            try:
                amount = float(amount.strip().lstrip("$"))
            except ValueError:
                pass
        if (
            isinstance(amount, bool)
            or not isinstance(amount, int | float)
            or not math.isfinite(amount)
            or amount <= 0
        ):
            raise ValidationError(
                f"{where}: {window} must be a positive number of USD, got {show(amount)}"
            )
        if amount > MAX_BUDGET_CAP:
            raise ValidationError(
                f"{where}: {window} must be at most {MAX_BUDGET_CAP:.0f} USD, got {show(amount)}"
            )
        out[window] = float(amount)
    return out


def backend_list(value: Any, key: str) -> list[str]:
    """Return a list of backend names, each once (``codex,shell`` as text is accepted)."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    names = str_list(value, key)
    for name in names:
        if name not in tuple(BackendName):
            raise ValidationError(
                f"invalid {key} '{name}' (choose {', '.join(b.value for b in BackendName)})"
            )
    return list(dict.fromkeys(names))


def _backends(value: Any, info: ValidationInfo) -> Any:
    return None if value is None else backend_list(value, _name(info))


def _budget(value: Any, info: ValidationInfo) -> Any:
    # A policy: unset (null, "", "none") clears the caps.
    return check_budget(value, f"'{_name(info)}'") or None


# A model id as the CLIs take them: claude-opus-4-8, claude-opus-4-8[1m], gpt-5.5, opus, a
# Bedrock id (us.anthropic.claude-…-v1:0) or an ARN (…:inference-profile/…). Not in the price
# table is fine (the result then says the cost is unknown and how to add a price); anything
# else — empty, spaces, quotes, control characters — is refused.
MODEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@\[\]+-]{0,199}")


def _model(value: Any, info: ValidationInfo) -> Any:
    _text(value, info)
    if value is None:
        return None
    if not MODEL_RE.fullmatch(value) or not re.search(r"[A-Za-z]", value):
        raise ValidationError(
            f"invalid {_name(info)} {show(value)}: a model id is letters, digits and . _ - : / "
            "@ [ ] + (e.g. claude-opus-4-8, gpt-5.5, opus), at most 200 characters"
        )
    return value


def _refs(value: Any, info: ValidationInfo) -> Any:
    # A batch task's name may be a number (`name: 1`), so ``after`` may refer to one.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif isinstance(value, list):
        value = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return str_list(value, _name(info))


def _globs(value: Any, info: ValidationInfo) -> Any:
    return validate_globs(value)


def policy(
    check: Callable[[Any, ValidationInfo], Any], *, unset: bool
) -> Callable[[Any, ValidationInfo], Any]:
    """Wrap a policy check: text ``none`` or empty means unset (when ``unset`` allows it)."""

    def run(value: Any, info: ValidationInfo) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            if not unset:
                raise ValidationError(f"'{_name(info)}' cannot be unset")
            return None
        return check(value if not isinstance(value, str) else value.strip(), info)

    return run


def bounds(**keywords: float) -> Any:
    """Return a Field that documents numeric bounds (``minimum=0``…) in the JSON schema.

    The checks themselves run in the before-validators, with Dobby's messages; pydantic's own
    ``ge``/``le`` would be written untranslated into the schema after such a validator.
    """
    return Field(json_schema_extra=dict(keywords))


def before(check: Callable[[Any, ValidationInfo], Any], accepts: Any) -> BeforeValidator:
    """Run ``check`` before the type's own validation; ``accepts`` is the schema's input."""
    return BeforeValidator(check, json_schema_input_type=accepts)


# Field types: the annotation is what the hub keeps; ``accepts`` is what a client may send.
Text = Annotated[str, before(_text, str)]
Prompt = Annotated[str, before(_prompt, str), Field(min_length=1, max_length=MAX_PROMPT_BYTES)]
Flag = Annotated[bool, before(to_bool, bool | str)]
Backend = Annotated[BackendName, before(choice(tuple(BackendName)), BackendName)]
PriorityName = Annotated[Priority, before(choice(tuple(Priority)), Priority)]
Timeout = Annotated[
    float,
    before(bounded_seconds(MAX_TIMEOUT), float | str),
    bounds(exclusiveMinimum=0, maximum=MAX_TIMEOUT),
]
VerifyCommand = Annotated[str, before(_verify, str), Field(max_length=MAX_VERIFY_BYTES)]
VerifyTimeout = Annotated[
    float,
    before(_verify_timeout, float | str),
    bounds(exclusiveMinimum=0, maximum=MAX_TIMEOUT),
]
FixAttempts = Annotated[
    int, before(_fix_attempts, int | str), bounds(minimum=0, maximum=MAX_FIX_ATTEMPTS)
]
BackendNames = Annotated[list[BackendName], before(_backends, list[BackendName] | str)]
BudgetCaps = Annotated[
    dict[str, float] | None, before(_budget, dict[str, float | str] | str | None)
]
Names = Annotated[list[str], before(_list, list[str] | str)]
Refs = Annotated[list[str], before(_refs, list[str | int] | str | int)]
Globs = Annotated[list[str], before(_globs, list[str] | str)]
Gpus = Annotated[int, before(ints(0, MAX_GPUS), int | str), bounds(minimum=0, maximum=MAX_GPUS)]
ModelName = Annotated[str, before(_model, str)]
model_name = _model  # the same checks for a policy value
usd = _usd
Turns = Annotated[int, before(ints(1, MAX_TURNS), int | str), bounds(minimum=1, maximum=MAX_TURNS)]
Budget = Annotated[
    float, before(_usd, float | str), bounds(exclusiveMinimum=0, maximum=MAX_BUDGET_USD)
]


# -- parsing -------------------------------------------------------------------------------------


class Shape(BaseModel):
    """A request body: unknown keys are refused, every string must be valid text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        check_text(data)
        return data

    @classmethod
    def unknown_message(cls, unknown: list[str]) -> str:
        """Return the error for keys the shape does not have."""
        return f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(cls.keys())})"

    @classmethod
    def keys(cls) -> list[str]:
        """Return the keys a body may have, in declaration order."""
        return list(cls.model_fields)

    @classmethod
    def explain(cls, exc: pydantic.ValidationError) -> str:
        """Return the one-line message of a failed validation (unknown keys first)."""
        errors = exc.errors(include_url=False)
        unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden"
                   and len(e["loc"]) == 1]  # fmt: skip
        if unknown:
            return cls.unknown_message(sorted(unknown))
        return error_message(errors[0])

    def given(self) -> dict[str, Any]:
        """Return the fields the body set (not the defaults), validated; enums as text."""
        out = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if isinstance(value, list):
                value = [v.value if isinstance(v, StrEnum) else v for v in value]
            out[name] = value.value if isinstance(value, StrEnum) else value
        return out


def error_message(error: Any) -> str:
    """Return the text of one pydantic error: our own message, or one naming the field."""
    where = ".".join(str(part) for part in error["loc"]) or "body"
    if error["type"] in ("value_error", "assertion_error"):
        return str(error["ctx"]["error"])
    if error["type"] == "missing":
        return f"'{where}' is required"
    if error["type"] == "extra_forbidden":
        return f"unknown field '{where}'"
    return f"'{where}': {error['msg'][:1].lower()}{error['msg'][1:]}"


def parse(shape: type[S], body: Any) -> S:
    """Return ``body`` as ``shape``, or raise ValidationError with one line naming the field."""
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    try:
        return shape.model_validate(body)
    except pydantic.ValidationError as exc:
        raise ValidationError(shape.explain(exc)) from None
