"""The measurements behind docs/cpu-kinds.md: run once per CPU kind, then compare.

    # on this machine, then with AVX2 kernels on the same machine (or on an AVX2 machine):
    python docs/cpu_kinds.py prefixes --out docs/cpu-kinds/prefixes-native.json
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \\
        python docs/cpu_kinds.py prefixes --out docs/cpu-kinds/prefixes-avx2.json
    python docs/cpu_kinds.py prefixes --mutate align-lr --out docs/cpu-kinds/...json
    python docs/cpu_kinds.py compare A.json B.json    # fingerprint differences, sha256 equality
    python docs/cpu_kinds.py steps --out docs/cpu-kinds/steps-native.json
    # once: the committed teachers' summaries gain the fingerprints and the machine of a run
    # whose every prefix sha256 equals the committed one (refused otherwise)
    python docs/cpu_kinds.py prefixes --stop-after instruct --out docs/cpu-kinds/all.json
    python docs/cpu_kinds.py record docs/cpu-kinds/all.json

`prefixes` retrains every teacher up to its vision and align prefixes with the recorded seed
and one thread (as `make test` does) and writes the records. `--mutate` changes one thing of
the recipe first: `align-lr` (x1.1), `vision-lr` (x1.1) or `init` (the LLM's init std x1.1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from studylib import machine
from studylib.testbed import fingerprint, speed, teacher_recipes, teachers, toy

ARCHS = ("toy-llava", "toy-bunny", "toy-internvl")
TEACHERS = Path(__file__).resolve().parents[1] / "teachers"


def mutation(name: str | None, arch: str) -> dict:
    """Recipe overrides for `--mutate` (init is patched in `toy` instead)."""
    recipe = teacher_recipes.resolve(toy.TEACHER_SIZE, {})
    if name == "align-lr":
        return {"align": {"lr": recipe["align"]["lr"] * 1.1}}
    if name == "vision-lr":
        return {"vision": {"lr": recipe["vision"]["lr"] * 1.1}}
    if name == "init":
        toy.TEXT_INIT_STD *= 1.1
    return {}


def prefixes(args) -> dict:
    torch.set_num_threads(1)
    out = {"machine": machine.signature(), "mutate": args.mutate, "archs": {}}
    for arch in args.archs.split(","):
        overrides = mutation(args.mutate, arch)
        got = teachers.train_teacher(arch, None, stop_after=args.stop_after, **overrides)
        out["archs"][arch] = got["prefix_checksums"]
        if args.mutate == "init":
            toy.TEXT_INIT_STD = toy.TEXT_INIT_STD / 1.1
        print(arch, {s: r["sha256"][:12] for s, r in got["prefix_checksums"].items()},
              flush=True)
    return out


def compare(a: dict, b: dict) -> None:
    print(f"A: {a['machine']} mutate={a['mutate']}\nB: {b['machine']} mutate={b['mutate']}")
    for arch in a["archs"]:
        for stage, rec in a["archs"][arch].items():
            other = b["archs"][arch][stage]
            diffs = fingerprint.differences(rec["fingerprint"], other["fingerprint"])
            worst = sorted(diffs.items(), key=lambda kv: -kv[1])[:3]
            for part in ("norms", "update_norms"):
                vals = [d for k, d in diffs.items() if k.startswith(part + "/")]
                print(f"{arch:13s} {stage:7s} {part:12s} max rel diff {max(vals):.3e}  "
                      f"median {sorted(vals)[len(vals) // 2]:.3e}")
            print(f"{'':21s} sha256 equal: {rec['sha256'] == other['sha256']}; worst: "
                  + ", ".join(f"{k} {d:.2e}" for k, d in worst))


def record(run: dict) -> None:
    """Write `run`'s fingerprints and machine into the committed summaries, only if every
    stage's sha256 equals the committed one (the run reproduced the training bit for bit).
    Also moves the summary to the current format: "threads" into "machine", and the recipe's
    "bf16": true as "dtype": "bfloat16"."""
    if run["mutate"]:
        raise SystemExit("record: a mutated run is not the committed training")
    updated = {}
    for arch, prefixes in run["archs"].items():
        path = TEACHERS / arch / "training_summary.json"
        summary = json.loads(path.read_text())
        if set(prefixes) != set(summary["prefix_checksums"]):
            raise SystemExit(f"record: {arch}: the run has stages {sorted(prefixes)}, "
                             f"the summary {sorted(summary['prefix_checksums'])}")
        for stage, rec in prefixes.items():
            want = summary["prefix_checksums"][stage]
            if (rec["step"], rec["sha256"]) != (want["step"], want["sha256"]):
                raise SystemExit(f"record: {arch} {stage}: sha256 differs from the committed "
                                 "one: this run did not reproduce the training")
            want["fingerprint"] = rec["fingerprint"]
        if summary.pop("threads", run["machine"]["threads"]) != run["machine"]["threads"]:
            raise SystemExit(f"record: {arch}: recorded with another thread count")
        summary["machine"] = run["machine"]
        if "bf16" in summary["recipe"]:
            summary["recipe"] = {"dtype": "bfloat16" if summary["recipe"].pop("bf16")
                                 else "float32", **summary["recipe"]}
        updated[path] = summary
    for path, summary in updated.items():  # all verified: now write
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        tmp.replace(path)
        print(f"recorded {path}")


def steps(args) -> dict:
    torch.set_num_threads(args.threads)
    times = speed.step_times(rounds=args.rounds)
    out = {"machine": machine.signature(), "times_s": times,
           "median_s": {d: statistics.median(t) for d, t in times.items()}}
    print(json.dumps(out["median_s"]))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("prefixes")
    q.add_argument("--archs", default=",".join(ARCHS))
    q.add_argument("--stop-after", default="align")
    q.add_argument("--mutate", choices=("align-lr", "vision-lr", "init"))
    q.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    r = sub.add_parser("record")
    r.add_argument("run")
    s = sub.add_parser("steps")
    s.add_argument("--rounds", type=int, default=6)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out", required=True)
    args = p.parse_args()
    if args.cmd == "compare":
        compare(*(json.loads(Path(f).read_text()) for f in (args.a, args.b)))
        return 0
    if args.cmd == "record":
        record(json.loads(Path(args.run).read_text()))
        return 0
    result = prefixes(args) if args.cmd == "prefixes" else steps(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
