"""Real instruction data in the LLaVA-v1.5-mix665k / Bunny-695K layout (`--data`, `--image-folder`).

The file is a JSON list of records `{"id", "image"?, "conversations": [{"from": "human" |
"gpt", "value": ...}, ...]}`. `read_records` reads and checks all of it before any model
is loaded, so a bad file costs one line that names the record index, not a failed run:
an unknown key, a missing or ill-formed `conversations`, an `<image>` placeholder without
an image (or the reverse), or an image file that is missing from the image folder or
cannot be decoded.

Records are kept as LLaVA's own `preprocess_multimodal` sees them: the `<image>`
placeholder is moved to the front of its turn ("<image>\\n question"). Text-only records
(LLaVA's mix has ShareGPT conversations) have no `image` and no placeholder: the collator
gives them no image tokens and no pixels, which is what LLaVA's training does in effect
(it encodes a blank image for them and uses none of its features).

`model` is accepted as a known key and ignored: the ShareGPT records of mix665k carry one.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from studylib.errors import StudyError

IMAGE_TOKEN = "<image>"
KNOWN_KEYS = ("id", "image", "conversations", "model")
CHECK_CHUNK = 1024  # images read per batch of threads
BAR_DELAY_S = 2.0  # the image check's bar shows when it takes longer (a bad file in a small
# set is then one clean line)
ROLES = ("human", "gpt")


def read_records(path: str | os.PathLike, image_folder: str | os.PathLike | None,
                 progress: bool = True) -> list[dict[str, Any]]:
    """All records of a LLaVA-format JSON file, checked and normalised (see module doc),
    every image opened and decoded (`verify_images`, with a progress bar).

    `image_folder` may be None only when no record names an image.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"--data {path}: no such file")
    if image_folder is not None and not Path(image_folder).is_dir():
        raise StudyError(f"--image-folder {image_folder}: no such directory")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudyError(f"--data {path} is not a JSON file ({exc})") from None
    if not isinstance(data, list) or not data:
        raise StudyError(f"--data {path} must be a non-empty JSON list of records")
    records = [_check(path, i, rec, image_folder) for i, rec in enumerate(data)]
    verify_images(path, records, image_folder, progress=progress)
    return records


def verify_images(path: Path, records: list[dict[str, Any]], image_folder, progress: bool = True,
                  workers: int | None = None) -> None:
    """Open every image the records name, once per file: `PIL.Image.verify` (the file's
    structure), then a full decode (its pixels; `verify` alone passes a truncated JPEG).
    The first unreadable file, in record order, is one line naming its record and path.
    Files are read by `workers` threads (default: one per core, at most 8; PIL decodes
    without the GIL), `CHECK_CHUNK` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    first: dict[str, int] = {}
    for i, rec in enumerate(records):
        if rec.get("image") is not None:
            first.setdefault(rec["image"], i)
    items = list(first.items())
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool, tqdm(
            total=len(items), desc="checking images", unit="image", leave=False,
            disable=not progress or not items, delay=BAR_DELAY_S) as bar:
        for start in range(0, len(items), CHECK_CHUNK):
            chunk = items[start:start + CHECK_CHUNK]
            files = [Path(image_folder) / name for name, _ in chunk]
            for (_, i), file, error in zip(chunk, files, pool.map(_unreadable, files),
                                           strict=True):
                if error:
                    raise StudyError(f"{path.name}: record {i}: cannot read image {file} "
                                     f"({error})")
            bar.update(len(chunk))


def _unreadable(file: Path) -> str | None:
    """Why `file` does not decode as an image, or None."""
    from PIL import Image

    try:
        with Image.open(file) as image:
            image.verify()
        with Image.open(file) as image:
            image.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file
        return f"{type(exc).__name__}: {exc}"
    return None


def _check(path: Path, i: int, rec: Any, image_folder) -> dict[str, Any]:
    def bad(message: str) -> StudyError:
        return StudyError(f"{path.name}: record {i}: {message}")

    if not isinstance(rec, dict):
        raise bad(f"expected an object, got {type(rec).__name__}")
    unknown = sorted(set(rec) - set(KNOWN_KEYS))
    if unknown:
        raise bad(f"unknown key {unknown[0]!r} (known: {', '.join(KNOWN_KEYS)})")
    turns = rec.get("conversations")
    if not isinstance(turns, list) or len(turns) < 2:
        raise bad("needs 'conversations', a list of at least one human and one gpt turn")
    for j, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise bad(f"conversation turn {j} must be an object with a string 'value'")
        if turn.get("from") != ROLES[j % 2]:
            raise bad(f"conversation turn {j} must be from {ROLES[j % 2]!r}, "
                      f"got {turn.get('from')!r} (turns alternate, human first)")
    placeholders = sum(t["value"].count(IMAGE_TOKEN) for t in turns)
    image = rec.get("image")
    if image is None:
        if placeholders:
            raise bad(f"has {IMAGE_TOKEN} in its conversation but no 'image'")
        return {**rec, "conversations": [dict(t) for t in turns]}
    if not isinstance(image, str) or not image:
        raise bad("'image' must be a file name")
    if placeholders != 1 or IMAGE_TOKEN not in turns[0]["value"]:
        raise bad(f"an image record needs exactly one {IMAGE_TOKEN}, in its first turn "
                  f"(found {placeholders})")
    if image_folder is None:
        raise bad(f"names image {image!r}: give --image-folder")
    if not (Path(image_folder) / image).is_file():
        raise bad(f"image file not found: {Path(image_folder) / image}")
    first = turns[0]["value"].replace(IMAGE_TOKEN, "").strip()
    turns = [{**turns[0], "value": f"{IMAGE_TOKEN}\n{first}"}] + [dict(t) for t in turns[1:]]
    return {**rec, "conversations": turns}


def calibration_sample(records: list[dict[str, Any]], n: int, seed: int = 0
                       ) -> list[dict[str, Any]]:
    """n records drawn without replacement (seeded), like the ShapesWorld calibration sample."""
    if n > len(records):
        raise StudyError(f"--calib-samples {n} is more than the {len(records)} records in --data")
    return random.Random(seed).sample(records, n)
