"""The verdict rule's error rates on 1,000 simulated families per setting (issue 27).

    .venv/bin/python docs/rule_error_rates.py [--families 1000] [--out docs/rule-error-rates.json]

The five settings of `analysis.simulate.SETTINGS`, from claims where seeds dominate to claims
where the evaluation does, and a family whose claims differ in seed noise, each judged by the
study's rule (paired, shared evaluation variance, the family's pooled seed variance, bounded
df) and by five earlier or alternative forms (`simulate.RULE_FORMS`). `variance` checks, per
setting, the se against the spread of d over all-null families (`simulate.variance_check`).
Chapter 05 shows the same table for two of the rules.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from studylib.analysis import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", type=int, default=1000)
    parser.add_argument("--out", default="docs/rule-error-rates.json")
    args = parser.parse_args()
    table = simulate.rule_table(args.families)  # every SETTINGS x RULE_FORMS
    out = [{k: round(v, 1 if k == "wall_s" else 4) if isinstance(v, float) else v
            for k, v in row.items()} for row in table.to_dict("records")]
    print(table.drop(columns="wall_s").to_string(index=False))
    variance = {name: {k: round(v, 4) for k, v in simulate.variance_check(
        setup, args.families).items()} for name, setup in simulate.SETTINGS.items()}
    print(json.dumps(variance, indent=1))
    Path(args.out).write_text(json.dumps({"families": args.families, "rows": out,
                                          "variance": variance}, indent=1) + "\n")


if __name__ == "__main__":
    main()
