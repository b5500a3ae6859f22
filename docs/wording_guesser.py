"""How much of a yes/no benchmark its wording answers: for every MME subtask, the majority
answer of each question string on the first half of a long validation draw, scored on the
second half. No image is seen, so a subtask whose questions carry no hint scores ~50%.

    .venv/bin/python docs/wording_guesser.py [--pairs 2000]

(docs/testbed-recipe-search.md, "MME questions that answer themselves": 60-83% on nine of
the fourteen subtasks before MME's scene-level "no" questions were drawn against a decoy
scene, 49-52% on all fourteen since.) The rule is `suite.wording_accuracy`.
"""

from __future__ import annotations

import argparse
import collections

from studylib.testbed import suite
from studylib.testbed.shapes import MME_C_SUBTASKS, MME_P_SUBTASKS


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=2000, help="image pairs per subtask")
    a = p.parse_args(argv)
    print("| benchmark | subtask | wording-only accuracy |\n|---|---|---|")
    for name, subtasks in (("MME-P", MME_P_SUBTASKS), ("MME-C", MME_C_SUBTASKS)):
        by = collections.defaultdict(list)
        for it in suite.benchmark(name, size=a.pairs * len(subtasks), split="val"):
            by[it.subset].append(it)
        for subtask in subtasks:
            print(f"| {name} | {subtask} | {suite.wording_accuracy(by[subtask]):.1f} |")


if __name__ == "__main__":
    main()
