"""The verdict rule's error rates on 1,000 simulated families per setting (issue 27).

    .venv/bin/python docs/rule_error_rates.py [--families 1000] [--out docs/rule-error-rates.json]

Four settings of `analysis.simulate.Setup`, from claims where seeds dominate to claims where
the evaluation does (the book's findings span that range: README, "The evidence"), each
judged by the study's rule (paired, shared evaluation variance, bounded df) and by three
earlier or alternative forms.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from studylib.analysis import simulate

SETUPS = {
    "default": simulate.Setup(),
    "seeds paired closely (finding 4)": simulate.Setup(seed_sd=0.13, seed_corr=0.97,
                                                       interaction_sd=0.5),
    "seeds paired loosely (finding 5)": simulate.Setup(seed_sd=0.2, seed_corr=0.5,
                                                       interaction_sd=0.5),
    "evaluation-heavy": simulate.Setup(seed_sd=0.05, seed_corr=0.9, interaction_sd=0.8),
}
RULES = {  # name -> (se_eval form, seed-variance bound on the df)
    "the study's rule (paired, shared, bounded df)": ("shared", True),
    "paired, shared, plain Welch-Satterthwaite": ("shared", False),
    "paired, whole, plain Welch-Satterthwaite": ("whole", False),
    "unpaired, plain Welch-Satterthwaite (before issue 27)": ("unpaired", False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", type=int, default=1000)
    parser.add_argument("--out", default="docs/rule-error-rates.json")
    args = parser.parse_args()
    out = []
    for setting, setup in SETUPS.items():
        for rule, (form, bound) in RULES.items():
            start = time.perf_counter()
            rates = simulate.error_rates(setup, families=args.families, rule=form, bound=bound)
            row = {"setting": setting, "rule": rule,
                   **dict(zip(rates.quantity, rates.value.round(4), strict=True)),
                   "wall_s": round(time.perf_counter() - start, 1)}
            print(json.dumps(row), flush=True)
            out.append(row)
    Path(args.out).write_text(json.dumps({"families": args.families, "rows": out}, indent=1)
                              + "\n")


if __name__ == "__main__":
    main()
