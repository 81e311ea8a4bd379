"""The value parsers of :mod:`simonsca.settings`: one per kind of value.

Each takes the raw value (a string from the command line, or a TOML value) and returns the
typed value or raises ValueError with what was expected -- so ``0.9`` and ``90%`` mean the same
rate everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def rate(value: Any) -> float:
    """A share between 0 and 1: ``0.9``, ``90%``."""
    number = _number(value, "a rate between 0 and 1 (e.g. 0.9 or 90%)")
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"expected a rate between 0 and 1 (e.g. 0.9 or 90%), got {value!r}")
    return number


def gain(value: Any) -> float:
    """A change in a rate, between -1 and 1: ``0.05``, ``5%``, ``-2%``."""
    number = _number(value, "a gain between -1 and 1 (e.g. 0.05 or 5%)")
    if not -1.0 <= number <= 1.0:
        raise ValueError(f"expected a gain between -1 and 1 (e.g. 0.05 or 5%), got {value!r}")
    return number


def significance(value: Any) -> float:
    """A significance level, above 0 and at most 0.5: ``0.05``, ``5%``."""
    number = _number(value, "a significance level such as 0.05")
    if not 0.0 < number <= 0.5:
        raise ValueError(f"expected a significance level above 0 and at most 0.5, got {value!r}")
    return number


def _number(value: Any, expected: str) -> float:
    if isinstance(value, bool):  # a TOML true is not 1.0; parsers raise ValueError for all
        raise ValueError(f"expected {expected}, got {value!r}")  # noqa: TRY004
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"expected {expected}, got {value!r}") from None
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"expected {expected}, got {value!r}")
    return number


def integer(low: int, high: int) -> Callable[[Any], int]:
    """A whole number in ``[low, high]``."""

    def parse(value: Any) -> int:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected a whole number from {low} to {high}, got {value!r}")
        try:
            number = (
                int(str(value).strip().replace("_", "")) if not isinstance(value, int) else value
            )
        except ValueError:
            raise ValueError(
                f"expected a whole number from {low} to {high}, got {value!r}"
            ) from None
        if not low <= number <= high:
            raise ValueError(f"expected a whole number from {low} to {high}, got {value!r}")
        return int(number)

    parse.__doc__ = f"A whole number from {low} to {high}."
    return parse


def choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip()
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return text

    parse.__doc__ = f"One of {', '.join(options)}."
    return parse


def text(value: Any) -> str:
    out = str(value)
    if not out.strip():
        raise ValueError("expected a non-empty value")
    return out


def model_ref(value: Any) -> str:
    """A GGUF path, or the URL of a served model (``http://host:port/v1#name``)."""
    out = str(value).strip()
    if not out:
        raise ValueError("expected a .gguf path or a server URL")
    return out


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def run_id(value: Any) -> str:
    out = str(value).strip()
    ok = out and all(ch.isalnum() or ch in "-_." for ch in out) and out not in (".", "..")
    if not ok or out == "latest":
        raise ValueError(
            f"expected a run id of letters, digits, '-', '_' and '.', not 'latest', got {value!r}"
        )
    return out
