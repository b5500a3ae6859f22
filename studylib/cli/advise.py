"""`studylib advise`: the best-practice recipe for a compression target."""

from __future__ import annotations

from pathlib import Path

from studylib.analysis.advise import BUDGETS, advise, check_query, format_advice
from studylib.cli import argtypes
from studylib.errors import StudyError


def cmd_advise(args) -> int:
    from studylib.results import ResultsTable

    check_query(args.ratio, args.data_fraction, args.budget)
    path = Path(args.table)
    if not path.exists():
        raise StudyError(f"results table not found: {path} (run `studylib study` first)")
    rows = ResultsTable(path).frame()
    adv = advise(rows, args.ratio, args.data_fraction, args.budget, arch=args.arch)
    print(format_advice(adv))
    return 0


def add_command(sub) -> None:
    ratio = argtypes.checked(lambda text: check_query(text)[0])
    data_fraction = argtypes.checked(lambda text: check_query(0.5, text)[1])

    p = sub.add_parser("advise", help="which pruning + recovery pipeline to use, from the "
                                      "results table")
    p.add_argument("--ratio", required=True, type=ratio,
                   help="fraction of the LLM's decoder parameters to remove, in (0, 1)")
    p.add_argument("--data-fraction", type=data_fraction,
                   help="share of the recovery data you have, in (0, 1] (default: any)")
    p.add_argument("--budget", default="full", choices=tuple(BUDGETS),
                   help="what you can train: none, projector only, or full (projector + "
                        "LoRA, with distillation); default full")
    p.add_argument("--table", default="results/results.jsonl", help="results table to read")
    p.add_argument("--arch", help="only this architecture (default: every one in the table)")
    p.set_defaults(func=cmd_advise)
