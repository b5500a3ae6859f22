"""`studylib measure`: parameters, FLOPs, memory and latency of a checkpoint or a real architecture."""

from __future__ import annotations

import json

from studylib import models
from studylib.analysis.resources import beside_paper, format_table
from studylib.cli import argtypes
from studylib.compress import prune
from studylib.errors import StudyError
from studylib.evaluation import measure
from studylib.evaluation.measure import ARCHS, arch_row, arch_table, format_measure


def cmd_measure(args) -> int:
    if (args.ratio is None) != (args.method is None):
        raise StudyError("--ratio and --method go together")
    if args.arch:
        if args.ratio is None:
            rows = arch_table(args.arch, text_tokens=args.text_tokens)
        else:
            rows = [arch_row(args.arch, args.method, args.ratio, args.text_tokens)]
        rows = [beside_paper(row) for row in rows]
        print(json.dumps(rows, indent=2) if args.json else format_table(rows))
        return 0
    if args.ratio is not None:
        prune.rehearse(args.model, args.method, args.ratio)
    model, processor = models.load(args.model)
    if args.ratio is not None:
        prune.shrink(model, args.method, args.ratio)
    result = measure.measure(model, processor, args.text_tokens, repeats=args.repeats)
    if args.ratio is not None:
        result["pruning"] = {"method": args.method, "ratio": args.ratio,
                             "note": "structure only (prune.shrink), for resource counts"}
    print(json.dumps(result, indent=2) if args.json else format_measure(result))
    return 0


def add_command(sub) -> None:
    p = sub.add_parser("measure", help="parameters, FLOPs, memory and latency of an MLLM")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="checkpoint directory (model + processor)")
    src.add_argument("--arch", choices=sorted(ARCHS),
                     help="a paper architecture on the meta device (no weights): without "
                          "--ratio, the 0/15/30/45/60%% table beside the paper's")
    p.add_argument("--ratio", type=argtypes.ratio, help="structurally prune this fraction first")
    p.add_argument("--method", choices=prune.METHODS)
    p.add_argument("--text-tokens", type=argtypes.positive_int, default=50)
    p.add_argument("--repeats", type=argtypes.positive_int, default=5, help="latency repeats")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_measure)
