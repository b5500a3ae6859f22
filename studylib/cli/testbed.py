"""`studylib eval | teacher | data`: evaluate a checkpoint, train a toy teacher, write the testbed data."""

from __future__ import annotations

import json
from pathlib import Path

from studylib.cli import argtypes
from studylib.errors import StudyError
from studylib.outputs import atomic_dir, check_out_dir, check_out_file
from studylib.testbed import instructions


def cmd_eval(args) -> int:
    from studylib import models, results
    from studylib.evaluation.evaluate import check_selection, evaluate, format_table
    from studylib.testbed import shapes

    benchmarks = args.benchmarks.split(",") if args.benchmarks else list(shapes.BENCHMARKS)
    check_selection(benchmarks, args.limit)
    out = check_out_file(args.out)
    results.ResultsTable(out).rows()  # a table that is not JSON Lines fails before the work
    model, processor = models.load(args.model)
    report = evaluate(model, processor, benchmarks=benchmarks, limit=args.limit, seed=args.seed,
                      batch_size=args.batch_size)
    print(format_table(report))
    config = {"command": "eval", "model": str(Path(args.model).resolve()), "limit": args.limit,
              "seed": args.seed, "benchmarks": benchmarks}
    rid = results.run_id(config)
    rows = results.eval_rows(report, model=str(args.model), seed=args.seed)
    wrote = results.ResultsTable(out).record(rid, rows, {"limit": args.limit})
    print(f"{'wrote' if wrote else 'already recorded'} run {rid} -> {out}")
    return 0


def cmd_teacher(args) -> int:
    from studylib.evaluation.evaluate import SKILLS, evaluate, option_lookup_accuracy
    from studylib.testbed import plan
    from studylib.testbed.teachers import continue_teacher, read_summary, train_teacher

    def option_lookup(model, processor):
        return option_lookup_accuracy(model, processor, split="val")

    named = args.plan in plan.NAMED
    text = plan.NAMED[args.plan][args.arch] if named else args.plan
    seed = args.plan_seed if args.plan_seed is not None else (plan.PLAN_SEED if named else 0)
    if text:
        plan.parse(text)  # a bad plan fails before any work
    if args.start_from:
        if not text:
            raise StudyError("--from continues a saved teacher through a plan: give --plan")
        if read_summary(args.start_from)["arch"] != args.arch:
            raise StudyError(f"{args.start_from} is not a {args.arch} teacher")
    out = check_out_dir(args.out, args.overwrite)
    scoring = dict(evaluate=None if args.no_eval else evaluate, skills=SKILLS,
                   probes=None if args.no_eval else {"option_lookup": option_lookup})
    if args.start_from:
        summary = continue_teacher(args.start_from, out, text, seed=seed, **scoring)
    else:
        summary = train_teacher(args.arch, out, size=args.size, seed=args.seed, plan=text,
                                plan_seed=seed, **scoring)
    short = {k: v for k, v in summary.items() if k not in ("loss_log", "eval")}
    print(json.dumps(short, indent=2, default=str))
    if "eval" in summary:
        print(f"AVG {summary['eval'].get('AVG', float('nan')):.2f}")
    return 0


# `studylib data` writes ~1 kB per image: the cap keeps a typo from filling the disk
# (LLaVA-v1.5-mix665k, the largest real set here, has 665k records).
MAX_DATA_IMAGES = 1_000_000


def cmd_data(args) -> int:
    """Write the instruction set (LLaVA JSON) and its PNG images, as real data is laid out."""
    from studylib.testbed import shapes

    out = check_out_dir(args.out, args.overwrite)
    if args.images > MAX_DATA_IMAGES:
        raise StudyError(f"--images {args.images} is more than {MAX_DATA_IMAGES:,}")
    records = instructions.instruction_set(args.images, turns=args.turns, seed=args.seed,
                                           occlusion=shapes.OCCLUSION)  # the benchmarks' world
    with atomic_dir(out, "data") as tmp:
        for rec in records:
            path = tmp / rec["image"]
            path.parent.mkdir(parents=True, exist_ok=True)
            shapes.load_image(rec["image"]).save(path)
        (tmp / "shapesworld_instruct.json").write_text(json.dumps(records, indent=1))
    print(f"wrote {len(records)} conversations and images to {out}")
    return 0


def add_command(sub) -> None:
    p = sub.add_parser("eval", help="score a model on the six ShapesWorld benchmarks")
    p.add_argument("--model", required=True, help="checkpoint directory (model + processor)")
    p.add_argument("--out", required=True, help="results table (JSON Lines) to append to")
    p.add_argument("--limit", type=argtypes.positive_int, help="items per benchmark (seeded subset)")
    p.add_argument("--seed", type=argtypes.seed_int, default=0, help="subset and bootstrap seed")
    p.add_argument("--benchmarks", help="comma-separated subset of GQA,SQA,POPE,MME-P,MME-C,MMMU")
    p.add_argument("--batch-size", type=argtypes.positive_int, default=64)
    p.set_defaults(func=cmd_eval)

    from studylib.testbed.toy import ARCHS, TEACHER_SIZE

    p = sub.add_parser("teacher", help="train a toy MLLM from scratch on ShapesWorld")
    p.add_argument("--arch", required=True, choices=sorted(ARCHS))
    p.add_argument("--size", default=TEACHER_SIZE, choices=sorted({s for sizes in ARCHS.values() for s in sizes}),
                   help=f"the model's size, toy.ARCHS (default: {TEACHER_SIZE}, the committed "
                   "teachers')")
    p.add_argument("--seed", type=argtypes.seed_int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--plan", help="stages after the recipe's (studylib.testbed.plan), e.g. "
                   "'lookup:250:lr=2e-4,mix:300'; 'v3' | 'v4': the architecture's plan.PLANS_V3 "
                   "| plan.PLANS entry (v4, the committed teachers')")
    p.add_argument("--plan-seed", type=argtypes.seed_int,
                   help="data seed of the plan's stages (default: plan.PLAN_SEED for v3 and v4, "
                   "else 0)")
    p.add_argument("--from", dest="start_from", metavar="DIR",
                   help="continue this saved teacher through --plan instead of training anew")
    p.add_argument("--no-eval", action="store_true", help="skip the benchmark run at the end")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_teacher)

    p = sub.add_parser("data", help="write the ShapesWorld instruction set as LLaVA JSON + PNGs")
    p.add_argument("--out", required=True)
    p.add_argument("--images", type=argtypes.positive_int, default=1000)
    p.add_argument("--turns", type=argtypes.positive_int, default=3)
    p.add_argument("--seed", type=argtypes.seed_int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_data)
