"""Issue 26's fast loop: continue a committed teacher through a plan of short stages and
write its validation curves (step, stage, the six headline scores, AVG, wall seconds) to
docs/probes/<name>.json. Every probe is logged in docs/testbed-recipe-search.md.

    OMP_NUM_THREADS=1 .venv/bin/python docs/teacher_probe.py --teacher toy-llava \\
        --plan "lookup:300,mix:300" --seed 7 --name llava-lookup-mix-s7

A plan is comma-separated stages `kind:steps[:key=value...]`. Kinds (STAGES below): lookup
(POPE + MME's lookup subtasks), mix (the committed instruct mix, binding 1, lookup 1), gqa,
mc (SQA + MMMU families), binding (text-only "which option says X?"). Every stage has no
descriptions (caption_rate 0) unless `caption=`. Keys: lr, bs (batch size), turns, caption,
balanced (1: every batch has as many "yes" as "no" answers, records unconstrained, batches
fed in order; 2: every *record* balanced, which leaks each record's last yes/no answer, P04),
w.<kind> (a mix weight, e.g. w.gqa=1 adds GQA), open (a share of the stage's records replaced
by `open` records, e.g. mix:300:open=0.25).
Each stage is one cosine schedule of `steps` optimizer steps (`teachers._fit`, float32,
`teachers.TRAINING_DTYPE`); stage i draws its records with data seed `seed + 1000 * i`.
The scores are `evaluate.evaluate(split="val", limit=80)`: headline (cloze) for SQA/MMMU, the
letters kept as "<benchmark> (letter)", plus the share of "yes" answers on POPE and MME-P.
`--from DIR` starts from a saved probe (`--save DIR` saves the end of one, under runs/).
`teacher_probe.py show docs/probes/<name>.json` prints a probe as the log's markdown table,
`teacher_probe.py summary` one row per probe, `teacher_probe.py control DIR` the
shuffled-image control of saved weights.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from studylib import machine, models
from studylib.evaluation import evaluate, metrics
from studylib.testbed import instructions, questions, shapes, teachers
from studylib.testbed.data import ConversationCollator
from studylib.training import LossLog, training_arguments

ROOT = Path(__file__).resolve().parent.parent
ZERO = teachers.ZERO_MIX
STAGES = {  # kind -> default stage settings (fact 3 of issue 26: batch 16, lr 5e-4, no captions)
    "lookup": dict(mix={**ZERO, "pope": 1, "lookup": 2}),
    "mix": dict(mix={**instructions.MIX, "binding": 1, "lookup": 1}),
    "gqa": dict(mix={**ZERO, "gqa": 1}),
    "mc": dict(mix={**ZERO, "sqa": 1, "mmmu": 1}),
    "binding": dict(mix=None),
    "mme": dict(mix={**ZERO, "mme": 1}),  # all ten MME-P and four MME-C subtasks, yes/no
    "yesno": dict(mix={**ZERO, "pope": 1, "lookup": 1, "mme": 2}),
    "open": dict(mix=None),  # SQA + MMMU families asked open, as cloze scores them (below)
}
DEFAULTS = dict(lr=5e-4, bs=16, turns=4, caption=0.0, balanced=0, open=0.0)


def parse_plan(plan: str) -> list[dict]:
    stages = []
    for part in plan.split(","):
        kind, steps, *keys = part.strip().split(":")
        if kind not in STAGES:
            sys.exit(f"unknown stage kind {kind!r}; choose from {', '.join(STAGES)}")
        stage = {"kind": kind, "steps": int(steps), **DEFAULTS,
                 "mix": dict(STAGES[kind]["mix"] or {})}
        for kv in keys:
            key, value = kv.split("=")
            if key.startswith("w."):
                stage["mix"][key[2:]] = float(value)
            elif key in DEFAULTS:
                stage[key] = type(DEFAULTS[key])(float(value))
            else:
                sys.exit(f"unknown stage key {key!r}; use lr, bs, turns, caption, balanced, open, w.<kind>")
        stages.append(stage)
    return stages


def _yes_no_balance(record) -> int:
    """#yes - #no answers of a record's yes/no turns."""
    turns = record["conversations"]
    return sum((a["value"] == "yes") - (a["value"] == "no")
               for q, a in zip(turns[0::2], turns[1::2], strict=True)
               if q["value"].endswith(shapes.YES_NO))


def open_mc_set(n: int, turns: int, seed: int) -> list[dict]:
    """n records of SQA/MMMU family questions asked as the cloze formulation asks them: the
    question without its options, answered by the right option's text (a reshaped family,
    issue 26 item 2; not in instructions.py: a probe)."""
    rng = random.Random(seed)
    families = questions.SQA_FAMILIES + questions.MMMU_FAMILIES
    records = []
    for i in range(n):
        scene = shapes.make_scene(shapes.TRAIN_SEED_BASE + seed * n + i)
        conv, tries = [], 0
        while len(conv) < 2 * turns:
            qa, tries = rng.choice(families)(scene, rng), tries + 1
            if qa is None:
                continue
            q, letter, extra = qa
            q = q.split("\nOptions:")[0]
            if tries < 50 and any(q in c["value"] for c in conv[0::2]):
                continue  # no question twice in a record (its answer would be in the text)
            conv.append({"from": "human", "value": ("" if conv else "<image>\n")
                         + f"{q}\n{shapes.SHORT_ANSWER}"})
            conv.append({"from": "gpt",
                         "value": extra["options"][shapes.LETTERS.index(letter)]})
        records.append({"id": f"open-{scene.seed}", "image": shapes.image_name(scene.seed),
                        "conversations": conv})
    return records


def stage_records(stage: dict, seed: int) -> list[dict]:
    """steps * bs records for the stage (instructions.instruction_set / binding_set)."""
    n = stage["steps"] * stage["bs"]
    if stage["kind"] == "binding":
        return instructions.binding_set(n, seed=seed)
    if stage["kind"] == "open":
        return open_mc_set(n, stage["turns"], seed)
    if stage["open"]:
        n_open = round(n * stage["open"])
        rest = stage_records({**stage, "open": 0.0, "steps": 1, "bs": n - n_open}, seed)
        mixed = rest + open_mc_set(n_open, stage["turns"], seed + 500)
        random.Random(seed).shuffle(mixed)
        return mixed
    records, chunk = [], seed
    while len(records) < n:  # balanced=2: draw more scenes until n balanced records
        batch = instructions.instruction_set(n, turns=stage["turns"], seed=chunk,
                                             caption_rate=stage["caption"], mix=stage["mix"])
        records += [r for r in batch if stage["balanced"] != 2 or _yes_no_balance(r) == 0]
        chunk += 100_000
    random.Random(seed).shuffle(records)  # balanced draws are scene-ordered
    if stage["balanced"] == 1:
        more = instructions.instruction_set(n // 2, turns=stage["turns"], seed=chunk,
                                            caption_rate=stage["caption"], mix=stage["mix"])
        return balanced_batches(records + more, stage["bs"], n, seed)
    return records[:n]


def balanced_batches(records: list[dict], bs: int, n: int, seed: int) -> list[dict]:
    """n records in batches of bs with as many "yes" as "no" answers each: units of one
    record with balance 0 or two with opposite balances, packed into batches, batch order
    shuffled (the Trainer then reads them in order)."""
    by_d: dict[int, list[dict]] = {}
    for r in records:
        by_d.setdefault(_yes_no_balance(r), []).append(r)
    units = [[r] for r in by_d.pop(0, [])]
    for d in sorted(k for k in by_d if k > 0):
        units += [[a, b] for a, b in zip(by_d[d], by_d.get(-d, []), strict=False)]
    rng = random.Random(seed)
    rng.shuffle(units)
    pairs, singles = [u for u in units if len(u) == 2], [u for u in units if len(u) == 1]
    k = round(bs * 2 * len(pairs) / (2 * len(pairs) + len(singles)) / 2)  # pairs per batch
    batches = []
    while len(batches) * bs < n:
        take = max(min(k, len(pairs)), (bs - len(singles) + 1) // 2)
        if take > len(pairs) or take > bs // 2:
            raise ValueError("not enough records to balance; draw more")
        batch = [r for _ in range(take) for r in pairs.pop()]
        batch += [singles.pop()[0] for _ in range(bs - len(batch))]
        rng.shuffle(batch)
        batches.append(batch)
    return [r for b in batches for r in b][:n]


def composition(records: list[dict]) -> dict:
    """Answer turns by format (yes/no, short answer, letter, caption) and the yes share."""
    counts = {"yes/no": 0, "short": 0, "letter": 0, "caption": 0, "yes": 0}
    for r in records:
        turns = r["conversations"]
        for q, a in zip(turns[0::2], turns[1::2], strict=True):
            kind = ("yes/no" if q["value"].endswith(shapes.YES_NO) else
                    "letter" if q["value"].endswith(shapes.LETTER) else
                    "short" if q["value"].endswith(shapes.SHORT_ANSWER) else "caption")
            counts[kind] += 1
            counts["yes"] += a["value"] == "yes"
    counts["yes_share"] = round(counts["yes"] / max(1, counts["yes/no"]), 3)
    return counts


def fit_in_order(model, records, collator, losses, *, seed, epochs, batch_size, lr,
                 logging_steps, bf16, step_offset=0, callbacks=()):
    """teachers._fit, but the Trainer reads the records in order (balanced batches)."""
    from transformers import Trainer

    losses.step_offset = step_offset
    with tempfile.TemporaryDirectory() as tmp:
        args = training_arguments(tmp, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                  logging_steps=logging_steps, bf16=bf16,
                                  train_sampling_strategy="sequential")
        trainer = Trainer(model=model, args=args, train_dataset=records, data_collator=collator,
                          callbacks=[losses.callback, *callbacks])
        return trainer.train()


class ProbeCurves(teachers.Curves):
    """teachers.Curves plus wall seconds and the share of "yes" answers (constant yes/no)."""

    def __init__(self, every: int, limit: int, processor, start: float):
        self.start, self.last = start, None
        super().__init__(self._evaluate, processor, every, limit)

    def _evaluate(self, *args, **kwargs):
        self.last = evaluate.evaluate(*args, **kwargs)
        return self.last

    def record(self, model, stage, step):
        super().record(model, stage, step)
        items = self.last.items
        point = self.points[-1]
        for b in ("POPE", "MME-P"):
            said = items[items.benchmark == b].prediction.map(metrics.parse_yes_no)
            point[f"{b} yes%"] = round(100 * float((said == "yes").mean()), 1)
            point[f"{b} other%"] = round(100 * float((said == "other").mean()), 1)
        scores = self.last.scores
        point["POPE acc"] = float(scores[(scores.benchmark == "POPE")
                                         & (scores.metric == "accuracy")].value.iloc[0])
        point["eval_s"] = round(self.last.wall_time, 1)
        point["wall_s"] = round(time.perf_counter() - self.start, 1)
        print(f"[wall] {point['wall_s']} s", flush=True)


COLUMNS = ("GQA", "SQA", "POPE", "MME-P", "MME-C", "MMMU", "AVG", "POPE acc", "POPE yes%",
           "POPE other%", "MME-P yes%", "SQA (letter)", "MMMU (letter)")


def show(path: str) -> str:
    """A probe's curves as a markdown table (the log's format)."""
    r = json.loads(Path(path).read_text())
    lines = ["| step | stage | " + " | ".join(COLUMNS) + " | wall s |",
             "|---|---|" + "---|" * (len(COLUMNS) + 1)]
    for pt in r["curves"]:
        cells = ["–" if c not in pt else f"{pt[c]:.0f}" if c in ("MME-P", "MME-C")
                 else f"{pt[c]:.1f}" for c in COLUMNS]
        lines.append(f"| {pt['step']} | {pt['stage']} | " + " | ".join(cells)
                     + f" | {pt['wall_s']:.0f} |")
    stages = "; ".join(f"{s['kind']} {s['steps_done']} steps ({s['wall_s']:.0f} s, "
                       f"{s['composition']['yes/no']} yes/no turns, yes share "
                       f"{s['composition']['yes_share']})" for s in r["stages"])
    return (f"`{r['command']}`\n\nfrom `{Path(r['from']).name}`, {stages}; total "
            f"{r['wall_s']:.0f} s on 1 thread.\n\n" + "\n".join(lines))


def summary(paths) -> str:
    """One row per probe: teacher, plan, seed, steps, wall seconds, last point's scores."""
    lines = ["| probe | teacher | plan | seed | steps | wall s | GQA | SQA | POPE F1 | MME-P | "
             "MME-C | MMMU | AVG |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    runs = [json.loads(Path(p).read_text()) for p in paths]
    for r in sorted(runs, key=lambda r: int(r["name"].split("-")[0][1:])):
        pt, start = r["curves"][-1], Path(r["from"])
        plan = f"`{r['plan']}`" + (f" (from {start.name})" if start.parent.name == "probe26"
                                   else "")
        if r["name"].startswith("P04"):  # run before balanced=1 meant batch-level
            plan += " as run = today's `balanced=2` (record-level)"
        steps = sum(s["steps_done"] for s in r["stages"])
        lines.append(f"| {r['name'].split('-')[0]} | {r['teacher']} | {plan} | {r['seed']} | "
                     f"{steps} | {r['wall_s']:.0f} | {pt['GQA']:.1f} | {pt['SQA']:.1f} | "
                     f"{pt['POPE']:.1f} | {pt['MME-P']:.0f} | {pt['MME-C']:.0f} | "
                     f"{pt['MMMU']:.1f} | {pt['AVG']:.1f} |")
    return "\n".join(lines)


def control(path: str, limit: int) -> str:
    """The image-shuffle control on a saved probe: headline scores with each item's own
    image and with another item's (`evaluate(images="shuffled")`), val split."""
    torch.set_num_threads(1)
    model, processor = models.load(path)
    rows = []
    for images in evaluate.IMAGES:
        report = evaluate.evaluate(model, processor, limit=limit, split="val", images=images,
                                   progress=False)
        head = report.headline()
        rows.append(f"| {images} | " + " | ".join(f"{head[b]:.1f}" for b in shapes.BENCHMARKS)
                    + f" | {report.summary()['AVG']:.1f} |")
    return ("| images | " + " | ".join(shapes.BENCHMARKS) + " | AVG |\n|---|"
            + "---|" * (len(shapes.BENCHMARKS) + 1) + "\n" + "\n".join(rows))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["show"]:
        print(show(argv[1]))
        return
    if argv[:1] == ["summary"]:  # every docs/probes/*.json: its last curve point
        print(summary(sorted((ROOT / "docs" / "probes").glob("*.json"))))
        return
    if argv[:1] == ["control"]:  # control DIR [LIMIT]: real vs shuffled images, val split
        print(control(argv[1], int(argv[2]) if len(argv) > 2 else 80))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True, help="toy-llava, toy-bunny, toy-internvl")
    p.add_argument("--plan", required=True)
    p.add_argument("--seed", type=int, default=0, help="data and Trainer seed")
    p.add_argument("--name", required=True)
    p.add_argument("--every", type=int, default=100, help="score every N steps of a stage")
    p.add_argument("--limit", type=int, default=80, help="val items per benchmark")
    p.add_argument("--from", dest="start_from", help="a saved probe to continue (else teachers/)")
    p.add_argument("--save", help="save the final model here (e.g. runs/probe26/<name>)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    stages = parse_plan(a.plan)
    source = a.start_from or str(ROOT / "teachers" / a.teacher)
    model, processor = models.load(source)
    model.model.vision_tower.requires_grad_(False)  # frozen, as in teacher training
    start = time.perf_counter()
    curves = ProbeCurves(a.every, a.limit, processor, start)
    collator, losses = ConversationCollator(processor, config=model.config), LossLog()
    curves.record(model, "start", 0)
    step, log = 0, []
    for i, stage in enumerate(stages):
        seed = a.seed + 1000 * i
        records = stage_records(stage, seed)
        t0 = time.perf_counter()
        fit = fit_in_order if stage["balanced"] == 1 else teachers._fit
        out = fit(model, records, collator, losses, seed=seed, epochs=1,
                  batch_size=stage["bs"], lr=stage["lr"], bf16=False,
                  logging_steps=10, step_offset=step,
                  callbacks=[curves.callback(stage["kind"], step)])
        step += out.global_step
        log.append({**stage, "data_seed": seed, "records": len(records),
                    "composition": composition(records), "steps_done": out.global_step,
                    "wall_s": round(time.perf_counter() - t0, 1)})
        print(f"[stage] {log[-1]}", flush=True)
    if a.save:
        models.save(model, processor, ROOT / a.save, command="teacher")
    result = {"name": a.name, "teacher": a.teacher, "from": source, "plan": a.plan,
              "seed": a.seed, "every": a.every, "limit": a.limit, "dtype": "float32",
              "command": "docs/teacher_probe.py " + shlex.join(argv),
              "machine": machine.signature(1), "stages": log,
              "wall_s": round(time.perf_counter() - start, 1),
              "curves": curves.points, "loss": losses.rows}
    out = ROOT / "docs" / "probes" / f"{a.name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
