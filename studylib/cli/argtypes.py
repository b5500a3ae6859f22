"""argparse types: bad text becomes one `studylib: ...` line and exit 2 before any work.

The checks themselves live with the library (`studylib.errors`), so a notebook or a library
caller gets the same message as the command line; `checked` turns such a check into an
argparse type.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from studylib.errors import StudyError, check_fraction, check_positive, check_ratio


def checked(check: Callable[..., Any], *args: Any) -> Callable[[str], Any]:
    """An argparse type that runs `check(text, *args)` and reports its StudyError."""
    def convert(text: str) -> Any:
        try:
            return check(text, *args)
        except StudyError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


ratio = checked(check_ratio)  # a pruning ratio in (0, 1)
fraction = checked(check_fraction)  # a data fraction in (0, 1]


def positive(name: str) -> Callable[[str], float]:
    """A finite number > 0, named in the message (epochs, learning rate, ...)."""
    return checked(check_positive, name)


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def seed_int(text: str) -> int:
    """An integer seed >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed must be >= 0, got {value}")
    return value
