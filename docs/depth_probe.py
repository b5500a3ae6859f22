"""Where a teacher computes: its validation AVG with decoder layers removed.

Issue 26's layer-60 check failed on the v3 teachers (AVG-% 78-89 with 60% of the layers
removed by Block Influence). This measures, on `limit` validation items per benchmark:
- `prefix`: only the first k layers kept, k = 0..n (the later ones removed);
- `single`: each layer removed alone;
- `bi`: the Block Influence of each layer on the calibration sample the book prunes with
  (10 records, seed 0);
- `pruned` (with `--prune`): AVG and AVG-% after `prune(method, ratio)` with no recovery,
  layer (Block Influence) and width (Taylor) at 15/30/45/60%, as chapter 01's prune-only cells.

    OMP_NUM_THREADS=1 .venv/bin/python docs/depth_probe.py teachers/toy-llava --limit 100 \\
        --out docs/probes/depth-toy-llava.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from studylib import models
from studylib.compress import importance, prune
from studylib.evaluation import evaluate
from studylib.models import surgery
from studylib.testbed import instructions


def scores(model, processor, limit: int) -> dict[str, float]:
    report = evaluate.evaluate(model, processor, limit=limit, split="val", progress=False)
    return {**{k: round(float(v), 1) for k, v in report.headline().items()},
            "AVG": round(float(report.summary()["AVG"]), 1)}


def without(model, drop) -> torch.nn.Module:
    pruned = copy.deepcopy(model)
    surgery.remove_layers(pruned, drop)
    return pruned


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--out", required=True)
    p.add_argument("--prune", action="store_true", help="also prune-only layer and width")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    model, processor = models.load(a.path)
    n = len(surgery.text_layers(model))
    start = time.perf_counter()
    out = {"path": a.path, "limit": a.limit, "layers": n, "full": scores(model, processor, a.limit)}
    records = instructions.calibration_sample(10, seed=0)
    out["bi"] = [round(float(s), 4) for s in importance.block_influence(model, records, processor)]
    print("full", out["full"], "\nbi", out["bi"], flush=True)
    out["prefix"] = {}
    for k in range(n):
        out["prefix"][k] = scores(without(model, range(k, n)), processor, a.limit)
        print("prefix", k, out["prefix"][k], flush=True)
    out["single"] = {}
    for i in range(n):
        out["single"][i] = scores(without(model, [i]), processor, a.limit)
        print("single", i, out["single"][i], flush=True)
    if a.prune:
        out["pruned"] = {}
        for method in ("layer", "width"):
            for ratio in (0.15, 0.3, 0.45, 0.6):
                pruned = copy.deepcopy(model)
                report = prune.prune(pruned, method, ratio, records, processor)
                got = scores(pruned, processor, a.limit)
                got["AVG_pct"] = round(100 * got["AVG"] / out["full"]["AVG"], 1)
                got["ratio_achieved"] = round(report.ratio_achieved, 3)
                out["pruned"][f"{method} {ratio:g}"] = got
                print("pruned", method, ratio, got, flush=True)
    out["wall_s"] = round(time.perf_counter() - start, 1)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
