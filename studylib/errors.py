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
