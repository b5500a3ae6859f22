"""argparse types: bad text becomes one `studylib: ...` line and exit 2 before any work.

The checks themselves live with the library (`studylib.errors`), so a notebook or a library
caller gets the same message as the command line; `checked` turns such a check into an
argparse type. The options several commands share (`--data`/`--image-folder`,
`--device`/`--dtype`) are declared here once, and `read_data` turns them into records and an
image loader before any model loads.
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


# ---------------------------------------------------------------------------------------------
# Options prune and recover share: real data, device and dtype


def add_data_options(parser: argparse.ArgumentParser, use: str) -> None:
    """`--data FILE.json --image-folder DIR`: LLaVA-format records instead of ShapesWorld;
    `--max-length`, `--image-aspect`: how records become sequences (`testbed.data`)."""
    from studylib.testbed.data import IMAGE_ASPECTS, LLAVA_MAX_LENGTH

    parser.add_argument("--data", help=f"LLaVA-v1.5-mix665k / Bunny-695K style JSON list of "
                                       f"records for the {use} (default: ShapesWorld)")
    parser.add_argument("--image-folder", help="directory the records' `image` paths are in")
    parser.add_argument("--max-length", type=positive_int,
                        help="tokens per sequence, image tokens included; whole turns that do "
                             "not fit are dropped and counted in the report (default: the "
                             "tokenizer's model_max_length, else "
                             f"{LLAVA_MAX_LENGTH}, at most the LLM's positions)")
    parser.add_argument("--image-aspect", choices=IMAGE_ASPECTS,
                        help="pad: LLaVA-1.5's expand-to-square in the mean colour, then the "
                             "processor; crop: the processor's own resize and centre crop "
                             "(default: pad with --data on a LLaVA-1.5 checkpoint, else crop)")


def add_device_options(parser: argparse.ArgumentParser) -> None:
    from studylib.models.checkpoint import DEVICES, DTYPES

    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto (default): cuda when available, else cpu")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="weights' dtype when loading (bfloat16 halves memory)")


def read_data(args) -> tuple[list | None, Any]:
    """(records, image loader) from --data/--image-folder, checked before any model loads;
    (None, None) means the ShapesWorld default."""
    from studylib.testbed import data, realdata

    if args.data is None:
        if args.image_folder is not None:
            raise StudyError("--image-folder needs --data")
        return None, None
    records = realdata.read_records(args.data, args.image_folder)
    loader = data.folder_loader(args.image_folder) if args.image_folder else None
    return records, loader
