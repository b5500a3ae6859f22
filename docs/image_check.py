"""What the checks before loading cost on real-sized data (README, "Real data, a GPU").

Writes N LLaVA-format records, each naming its own 640 x 480 JPEG (COCO's usual size, as in
LLaVA-v1.5-mix665k) with three question/answer turns, then times:

- `realdata.read_records`: parse and check every record, then open, `verify` and decode
  every image (the check that runs before any model loads), with its default threads, and
  the image part again on one thread;
- `ConversationCollator.fit` on toy-llava's processor: render every record with the chat
  template and count what `--max-length` would cut (the recovery pre-pass).

    .venv/bin/python docs/image_check.py [--images 10000] [--out docs/image-check.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from studylib import machine
from studylib.testbed import data, realdata


def write_dataset(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "images"
    folder.mkdir()
    records = []
    # a gradient with photo-like grain, so that a file is as large as a COCO JPEG (~160 kB)
    base = np.linspace(0, 200, 640)[None, :, None].repeat(480, 0).repeat(3, 2)
    grain = rng.normal(0, 24, (480, 640, 3))
    for i in range(n):
        shifted = np.roll(grain, (int(rng.integers(480)), int(rng.integers(640))), axis=(0, 1))
        image = Image.fromarray(np.clip(base + shifted, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(6):  # a few shapes, so that the JPEG is not one gradient
            x, y = rng.integers(0, 560), rng.integers(0, 400)
            draw.ellipse((x, y, x + 80, y + 80), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        image.save(folder / f"{i:06d}.jpg", "JPEG", quality=90)
        turns = []
        for k in range(3):
            question = ("<image>\n" if k == 0 else "") + "What colour is the circle on the left?"
            turns += [{"from": "human", "value": question},
                      {"from": "gpt", "value": "The circle on the left is red."}]
        records.append({"id": str(i), "image": f"{i:06d}.jpg", "conversations": turns})
    path = root / "data.json"
    path.write_text(json.dumps(records))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--out", default="docs/image-check.json")
    args = parser.parse_args()
    from transformers import AutoConfig, AutoProcessor

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = write_dataset(Path(tmp), args.images)
        written = time.perf_counter() - start
        size = sum(f.stat().st_size for f in (Path(tmp) / "images").iterdir())
        start = time.perf_counter()
        records = realdata.read_records(path, Path(tmp) / "images", progress=False)
        check = time.perf_counter() - start
        start = time.perf_counter()
        realdata.verify_images(path, records, Path(tmp) / "images", progress=False, workers=1)
        one_thread = time.perf_counter() - start
    processor = AutoProcessor.from_pretrained("teachers/toy-llava")
    collate = data.ConversationCollator(
        processor, config=AutoConfig.from_pretrained("teachers/toy-llava"))
    start = time.perf_counter()
    collate.fit(records)
    fit = time.perf_counter() - start
    result = {
        "images": args.images, "image_size": [640, 480], "mean_file_kb": round(size / args.images / 1024, 1),
        "write_s": round(written, 1),
        "read_records_s": round(check, 2), "per_image_ms": round(1000 * check / args.images, 3),
        "check_workers": min(8, os.cpu_count() or 1),
        "verify_one_thread_s": round(one_thread, 2),
        "fit_s": round(fit, 2), "fit_per_record_ms": round(1000 * fit / args.images, 3),
        "cpu_kind": machine.kind(), "cpu": machine.cpu_model(), "threads": torch.get_num_threads(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
