"""`studylib export-lmms | import-lmms | check-lmms`: the lmms-eval harness."""

from __future__ import annotations

import json
import sys

from studylib.cli import argtypes
from studylib.harness.lmms import (
    TOLERANCE,
    check,
    check_condition,
    check_passes,
    export_tasks,
    import_results,
    read_results,
)
from studylib.outputs import atomic_write_text, check_out_file
from studylib.testbed import shapes


def cmd_export(args) -> int:
    benchmarks = args.benchmarks.split(",") if args.benchmarks else list(shapes.BENCHMARKS)
    out = export_tasks(args.out, benchmarks, limit=args.limit, seed=args.seed,
                       overwrite=args.overwrite)
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"wrote {sum(manifest['items'].values())} items in {len(manifest['tasks'])} tasks "
          f"-> {out}\nrun: lmms-eval --model studylib --model_args pretrained=MODEL_DIR "
          f"--tasks {','.join(manifest['tasks'])} --include_path {out}")
    return 0


def cmd_import(args) -> int:
    from studylib import results

    check_out_file(args.table, "--table")
    check_condition(args.method, args.ratio, args.recipe, args.data_fraction)
    table = results.ResultsTable(args.table)
    table.rows()  # a table that is not JSON Lines fails before anything is printed
    data = read_results(args.results)
    rows = import_results(data, model=args.model, seed=args.seed)
    config = {"command": "import-lmms", "model": args.model, "seed": args.seed,
              "arch": args.arch, "method": args.method, "ratio": args.ratio,
              "recipe": args.recipe, "data_fraction": args.data_fraction,
              "results": data["results"]}
    rid = results.run_id(config)
    for r in rows:
        print(f"{r['benchmark']:<8}{r['metric']:<10}{r['value']:>9.2f}   {r['source']}")
    condition = {"arch": args.arch or args.model, "method": args.method, "ratio": args.ratio,
                 "recipe": args.recipe, "data_fraction": args.data_fraction}
    wrote = table.record(
        rid, rows, {"study": args.study, "command": "import-lmms", **condition})
    print(f"{'wrote' if wrote else 'already recorded'} run {rid} -> {args.table}")
    return 0


def cmd_check(args) -> int:
    if args.out is not None:
        check_out_file(args.out)
    benchmarks = args.benchmarks.split(",") if args.benchmarks else list(shapes.BENCHMARKS)
    table = check(args.model, limit=args.limit, seed=args.seed, benchmarks=benchmarks,
                  batch_size=args.batch_size)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"lmms-eval {table.attrs['lmms_eval_s']:.1f} s (with its start-up), "
          f"studylib eval {table.attrs['studylib_s']:.1f} s")
    if args.out:
        atomic_write_text(args.out, table.to_csv(index=False))
    if not check_passes(table):
        worst = table.loc[table["diff"].abs().idxmax()]
        print(f"lmms-check: FAILED: {worst.benchmark} {worst.metric} differs by "
              f"{worst['diff']:+.2f} points (tolerance {TOLERANCE})", file=sys.stderr)
        return 1
    print(f"lmms-check: every score within {TOLERANCE} points")
    return 0


def add_command(sub) -> None:

    p = sub.add_parser("export-lmms", help="write the ShapesWorld benchmarks as lmms-eval tasks")
    p.add_argument("out", help="task directory to write (pass it to --include_path)")
    p.add_argument("--benchmarks", help="comma-separated subset of the six (default: all)")
    p.add_argument("--limit", type=argtypes.positive_int, help="items per benchmark, as studylib eval")
    p.add_argument("--seed", type=argtypes.seed_int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import-lmms", help="add an lmms-eval results JSON to the results table")
    p.add_argument("results", help="lmms-eval's *_results.json, or its --output_path directory")
    p.add_argument("--model", required=True, help="label of the scored model in the table")
    p.add_argument("--seed", type=argtypes.seed_int, default=0)
    p.add_argument("--study", default="lmms-eval", help="study column of the rows")
    p.add_argument("--table", default="results/results.jsonl")
    # The condition columns the book's findings and `studylib advise` group by.
    p.add_argument("--arch", help="architecture label (default: --model); the unpruned "
                   "model's rows are the AVG-%% reference of its arch")
    p.add_argument("--method", choices=("none", "layer", "width"), default="none")
    p.add_argument("--ratio", type=float, default=0.0, help="pruning ratio (0 for none)")
    p.add_argument("--recipe", default="none", help="recovery recipe, e.g. sft+l2")
    p.add_argument("--data-fraction", type=float, help="fraction of the recovery data")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("lmms-check", help="lmms-eval (studylib plugin) vs studylib eval, "
                       "same model and items; exit 1 if any score differs by > 0.5 points")
    p.add_argument("model", help="checkpoint directory")
    p.add_argument("--benchmarks", help="comma-separated subset of the six (default: all)")
    p.add_argument("--limit", type=argtypes.positive_int)
    p.add_argument("--seed", type=argtypes.seed_int, default=0)
    p.add_argument("--batch-size", type=argtypes.positive_int, default=64)
    p.add_argument("--out", help="also write the comparison as CSV")
    p.set_defaults(func=cmd_check)
