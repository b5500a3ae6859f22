"""The one exception type user-facing commands turn into a one-line message and exit 2, and
the input checks several commands share (torch-free, so light modules can use them)."""

from __future__ import annotations

import math
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
