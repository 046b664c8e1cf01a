"""Model prices: the default table, lookup by model name, and the cost of a token count.

Claude Code reports its own cost (``total_cost_usd``); Codex reports only tokens, so Dobby
prices them itself. The defaults below are list prices at the time of writing and will drift:
users override or extend them in ``dobby.yaml`` under ``prices:`` (see :func:`parse_prices`)::

    prices:
      gpt-5.5: {input: 1.25, output: 10, cache_read: 0.125}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dobby.core.errors import ConfigError
from dobby.core.models import Tokens

PRICE_FIELDS = ("input", "output", "cache_read", "cache_write")


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million tokens of each kind."""

    input: float
    output: float
    cache_read: float = 0.0
    cache_write: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in PRICE_FIELDS}


# USD per million tokens. OpenAI bills cache writes as ordinary input, hence cache_write = input.
# Users override these in dobby.yaml `prices:`; entries there replace these one by one.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-6-sol": ModelPrice(input=2.50, output=20.00, cache_read=0.25, cache_write=2.50),
    "gpt-5.5": ModelPrice(input=1.50, output=12.00, cache_read=0.15, cache_write=1.50),
    "gpt-5-codex": ModelPrice(input=1.25, output=10.00, cache_read=0.125, cache_write=1.25),
    "gpt-5": ModelPrice(input=1.25, output=10.00, cache_read=0.125, cache_write=1.25),
    "gpt-4.1": ModelPrice(input=2.00, output=8.00, cache_read=0.50, cache_write=2.00),
    "o3": ModelPrice(input=2.00, output=8.00, cache_read=0.50, cache_write=2.00),
    # Claude Code prices itself (total_cost_usd); this entry only estimates the cost of a run
    # still in progress (detail-status). Reported as "claude-opus-4-8[1m]": prefix match.
    "claude-opus-4-8": ModelPrice(input=5.00, output=25.00, cache_read=0.50, cache_write=6.25),
}


def price_for(
    model: str | None, prices: Mapping[str, ModelPrice] | None = None
) -> ModelPrice | None:
    """Return the price of ``model``: exact name first, then the longest matching prefix.

    ``prices`` (the user's table) overrides :data:`DEFAULT_PRICES` entry by entry.
    """
    if not model:
        return None
    table: dict[str, ModelPrice] = {**DEFAULT_PRICES, **(prices or {})}
    if model in table:
        return table[model]
    # "gpt-5-codex-mini" must match "gpt-5-codex" before "gpt-5": longest prefix wins.
    matches = [name for name in table if name and model.startswith(name)]
    return table[max(matches, key=len)] if matches else None


def unpriced_warning(model: str | None) -> str:
    """Return the one-line warning of a run whose cost is unknown, and how to fix it."""
    if not model:
        return "cost unknown: the run's model is not known (pass --model to price it)"
    return (
        f"cost unknown: model {model!r} has no price; add it to dobby.yaml as "
        f"`prices: {{{model}: {{input: USD, output: USD}}}}` (per million tokens)"
    )


def cost(tokens: Tokens, price: ModelPrice) -> float:
    """Return the cost in USD of ``tokens``, whose four counts must not overlap."""
    total = (
        tokens.input * price.input
        + tokens.output * price.output
        + tokens.cache_read * price.cache_read
        + tokens.cache_write * price.cache_write
    )
    return total / 1_000_000


def parse_prices(mapping: Any) -> dict[str, ModelPrice]:
    """Validate a user price table (``{model: {input, output, cache_read?, cache_write?}}``).

    A missing ``cache_read`` or ``cache_write`` costs as much as ``input`` (never under-report).
    Raise :class:`ConfigError` naming the offending key.
    """
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(
            f"prices: must be a mapping of model name to prices, got {_kind(mapping)}"
        )
    table: dict[str, ModelPrice] = {}
    for model, entry in mapping.items():
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"prices: model name must be a non-empty string, got {model!r}")
        if not isinstance(entry, Mapping):
            raise ConfigError(
                f"prices.{model}: must be a mapping with input and output, got {_kind(entry)}"
            )
        unknown = sorted(str(k) for k in entry if k not in PRICE_FIELDS)
        if unknown:
            raise ConfigError(
                f"prices.{model}.{unknown[0]}: unknown key (choose {', '.join(PRICE_FIELDS)})"
            )
        values: dict[str, float] = {}
        for name in PRICE_FIELDS:
            if name not in entry:
                if name in ("input", "output"):
                    raise ConfigError(f"prices.{model}.{name}: missing (USD per million tokens)")
                continue
            values[name] = _price_value(entry[name], f"prices.{model}.{name}")
        values.setdefault("cache_read", values["input"])
        values.setdefault("cache_write", values["input"])
        table[model] = ModelPrice(**values)
    return table


def _price_value(value: Any, key: str) -> float:
    """Return ``value`` as a finite non-negative float or raise ConfigError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}: must be a number (USD per million tokens), got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"{key}: must be a finite number >= 0, got {value!r}")
    return number


def _kind(value: Any) -> str:
    return type(value).__name__
