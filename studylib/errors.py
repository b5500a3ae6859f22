"""The one exception type user-facing commands turn into a one-line message and exit 2, and
the input checks several commands share (torch-free, so light modules can use them)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


class StudyError(Exception):
    """Bad input or an unusable artefact: the CLI prints `studylib: <message>` and exits 2."""


def check_ratio(ratio: Any) -> float:
    """A pruning ratio as a float in (0, 1), else one StudyError line."""
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        raise StudyError(f"ratio must be a number in (0, 1), got {ratio!r}") from None
    if math.isnan(value) or not 0 < value < 1:
        raise StudyError(f"ratio must be in (0, 1), got {ratio!r}")
    return value


def check_fraction(fraction: Any) -> float:
    """A data fraction as a float in (0, 1], else one StudyError line."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise StudyError(f"data fraction must be a number in (0, 1], got {fraction!r}") from None
    if math.isnan(value) or not 0 < value <= 1:
        raise StudyError(f"data fraction must be in (0, 1], got {fraction!r}")
    return value


def check_positive(value: Any, name: str) -> float:
    """A finite number > 0 (epochs, learning rate, temperature), else one StudyError line.

    Infinity is refused as well as NaN: `inf > 0` holds, and an infinite epoch count reaches
    the Trainer, which fails deep inside with an OverflowError.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise StudyError(f"{name} must be a number > 0, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise StudyError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def check(ok: bool, message: str) -> None:
    """Raise `StudyError(message)` unless `ok`: the one-line refusal of a bad input."""
    if not ok:
        raise StudyError(message)


def check_at_least(p: Any, **minimum: float) -> None:
    """Each named attribute of `p` at least its minimum."""
    for name, lo in minimum.items():
        check(getattr(p, name) >= lo, f"{name} must be >= {lo}, got {getattr(p, name)}")


def check_distinct(name: str, values: Sequence[Any], at_least: float | None = None) -> None:
    """`values` distinct, and each at least `at_least` (then not empty either)."""
    low_ok = at_least is None or (bool(values) and min(values) >= at_least)  # and not empty
    check(low_ok, f"{name} must be >= {at_least}, got {list(values)}")
    check(len(set(values)) == len(values), f"{name} must be distinct, got {list(values)}")


def check_known(name: str, values: Sequence[str], known: Sequence[str], what: str,
                empty_ok: bool = True) -> None:
    """Every value one of `known` (and some value, unless `empty_ok`)."""
    check(empty_ok or bool(values), f"{name} must not be empty")
    bad = [v for v in values if v not in known]
    check(not bad, f"{name}: unknown {what} {bad[0]!r}; choose from {', '.join(known)}"
          if bad else "")
