"""`studylib prune`."""

from __future__ import annotations

import argparse
import json

from studylib import models
from studylib.cli import argtypes
from studylib.compress import prune
from studylib.errors import StudyError
from studylib.outputs import check_out_dir
from studylib.testbed import data, instructions, realdata, shapes


def _parse_range(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        start, end = (int(x) for x in text.split(":"))
    except ValueError:
        raise StudyError(f"--layer-range must be START:END, got {text!r}") from None
    return start, end


def checked_share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value:g}")
    return value


def cmd_prune(args) -> int:

    out = check_out_dir(args.out, args.overwrite)
    layer_range = _parse_range(args.layer_range)
    importance = prune.check_importance(args.method, args.importance)
    depth_share = prune.check_depth_share(args.method, args.depth_share)
    device = models.resolve_device(args.device)
    pool, image_loader = argtypes.read_data(args)  # every record checked before loading
    if pool is None:
        records = instructions.calibration_sample(args.calib_samples, seed=args.seed)
    else:
        records = realdata.calibration_sample(pool, args.calib_samples, seed=args.seed)
    prune.rehearse(args.model, args.method, args.ratio, layer_range, depth_share)
    config, processor = models.peek(args.model)  # lengths and aspect before the weights
    collate = data.ConversationCollator(
        processor, image_loader=image_loader or shapes.load_image, max_length=args.max_length,
        image_aspect=args.image_aspect or data.default_image_aspect(config, pool is not None),
        config=config)
    collate.fit(records, use="calibration")  # refused before the weights; prune() reports it
    model, processor = models.load(args.model, dtype=args.dtype, device=device)
    report = prune.prune(model, args.method, args.ratio, records, processor, importance=importance,
                         seed=args.seed, layer_range=layer_range, collate=collate,
                         depth_share=depth_share)
    if pool is not None:
        report.notes.append(f"calibration: {len(records)} of the {len(pool)} records of "
                            f"{args.data} (images: {args.image_folder})")
    models.save_pruned(model, processor, report, out)
    summary = {k: v for k, v in report.to_dict().items()
               if k not in ("layers", "layer_scores", "config_after")}
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")
    return 0


def add_command(sub) -> None:
    p = sub.add_parser("prune", help="prune the LLM layerwise (Block Influence), widthwise, or both")
    p.add_argument("--model", required=True, help="checkpoint directory (model + processor)")
    p.add_argument("--method", required=True, choices=prune.METHODS)
    p.add_argument("--ratio", required=True, type=argtypes.ratio,
                   help="fraction of the LLM decoder-layer parameters to remove, in (0, 1)")
    p.add_argument("--depth-share", type=checked_share,
                   help=f"depth+width: the share of the budget taken by whole layers (Block "
                        f"Influence), the rest by widths, in [0, 1] (default {prune.DEPTH_SHARE})")
    p.add_argument("--importance", choices=sorted({i for v in prune.IMPORTANCES.values() for i in v}),
                   help="layer: bi (default) | random; width and depth+width's widths: taylor "
                        "(default; the authors' batch gradient) | taylor-mean (per-sample mean) "
                        "| magnitude | random (depth+width's layers go by bi)")
    p.add_argument("--calib-samples", type=argtypes.positive_int, default=10,
                   help="calibration records, drawn with --seed")
    argtypes.add_data_options(p, "calibration sample")
    argtypes.add_device_options(p)
    p.add_argument("--seed", type=argtypes.seed_int, default=0, help="calibration-sample and random seed")
    p.add_argument("--layer-range", help="START:END, prune only these layers (width: "
                                         "non-uniform checkpoint, load with models.load_pruned)")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_prune)
