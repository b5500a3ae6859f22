"""Issue 26's fast loop: continue a committed teacher through a plan of short stages and
write its validation curves (step, stage, the six headline scores, AVG, wall seconds) to
docs/probes/<name>.json. Every probe is logged in docs/testbed-recipe-search.md.

    OMP_NUM_THREADS=1 .venv/bin/python docs/teacher_probe.py --teacher toy-llava \\
        --plan "lookup:300,mix:300" --seed 7 --name llava-lookup-mix-s7

The plan's grammar, stage kinds and keys are `studylib.testbed.plan`'s, and so is the loop
(`plan.run`, float32 = `teacher_recipes.TRAINING_DTYPE`): `studylib teacher --from DIR --plan ...`
trains the same weights, with the teacher's own curves. This tool adds denser curves.
The scores are `evaluate.evaluate(split="val", limit=80)`: headline (cloze) for SQA/MMMU, the
letters kept as "<benchmark> (letter)", plus the share of "yes" answers on POPE and MME-P.
`--from DIR` starts from a saved probe (`--save DIR` saves the end of one, under runs/).
`teacher_probe.py show docs/probes/<name>.json` prints a probe as the log's markdown table,
`teacher_probe.py summary` one row per probe, `teacher_probe.py control DIR` the
shuffled-image control of saved weights, `profile DIR` the accuracy per GQA family and MME-P
subtask, `position DIR` a linear probe of each image token's grid cell, `hidden DIR` the
accuracy per benchmark on scenes with and without a partly hidden object. `--occlusion S`
(any command) sets the world: the share of objects hidden in the benchmarks' scenes and in
the plan's (`shapes.OCCLUSION`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from studylib import machine, models
from studylib.chapters import teacher_profile
from studylib.evaluation import evaluate, metrics
from studylib.testbed import plan, shapes, teachers
from studylib.testbed.data import ConversationCollator
from studylib.training import LossLog

ROOT = Path(__file__).resolve().parent.parent


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
                       f"{s['composition']['yes/no']} yes/no turns"
                       + (f" drawn for {s['steps']} steps" if s["steps_done"] < s["steps"] else "")
                       + f", yes share {s['composition']['yes_share']})" for s in r["stages"])
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
        if r.get("occlusion"):  # the benchmarks' world, and the default of every stage
            plan += f", world at occlusion {r['occlusion']:g}"
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


def profile(path: str, limit: int) -> str:
    """Accuracy per question family (GQA) and subtask (MME-P) on the val split: which
    skills a model has (P34: position, relations and size at chance)."""
    torch.set_num_threads(1)
    model, processor = models.load(path)
    items = evaluate.evaluate(model, processor, benchmarks=("GQA", "MME-P"), limit=limit,
                              split="val", progress=False).items
    acc = (100 * items.groupby(["benchmark", "subset"]).correct.mean()).round(1)
    return "| benchmark | family | accuracy |\n|---|---|---|\n" + "\n".join(
        f"| {b} | {f} | {v} |" for (b, f), v in acc.items())


def position(path: str, n: int = 300) -> str:
    """How well a linear probe reads each image token's grid cell (0-8) from the features
    the LLM receives (after the projector): chance 11%. Trained on 2/3 of n validation-like
    scenes' tokens, scored on the rest."""
    torch.set_num_threads(1)
    model, processor = models.load(path)
    model.eval()
    images = [shapes.render(shapes.make_scene(10**6 + i)) for i in range(n)]
    with torch.no_grad():
        pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
        feats = model.model.get_image_features(pixel_values=pixels)
    feats = getattr(feats, "pooler_output", feats)
    x = torch.as_tensor(torch.stack(list(feats)) if isinstance(feats, (list, tuple)) else feats)
    x = x.reshape(n * 9, -1).float()
    y = torch.arange(9).repeat(n)
    cut = 9 * (2 * n // 3)
    x = (x - x[:cut].mean(0)) / (x[:cut].std(0) + 1e-6)
    torch.manual_seed(0)
    head = torch.nn.Linear(x.shape[1], 9)
    opt = torch.optim.Adam(head.parameters(), 1e-2)
    for _ in range(500):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(x[:cut]), y[:cut]).backward()
        opt.step()
    with torch.no_grad():
        acc = 100 * (head(x[cut:]).argmax(1) == y[cut:]).float().mean().item()
    return f"{path}: the cell of an image token, read linearly from the LLM's input: {acc:.1f}%"


def hidden(path: str, limit: int) -> str:
    """Accuracy per benchmark on the val items whose scene has a partly hidden object
    (`shapes.occluders`) and on those in full view: where occlusion costs a teacher."""
    torch.set_num_threads(1)
    model, processor = models.load(path)
    items = evaluate.evaluate(model, processor, limit=limit, split="val", progress=False).items
    table = teacher_profile.hidden_table(items, split="val")
    return "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n" + (
        "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in table.values))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    command = "docs/teacher_probe.py " + shlex.join(argv)
    world = argparse.ArgumentParser(add_help=False)
    world.add_argument("--occlusion", type=float, default=shapes.OCCLUSION)
    known, argv = world.parse_known_args(argv)
    shapes.OCCLUSION = known.occlusion  # the benchmarks' world, and the plan's default
    if argv[:1] == ["show"]:
        print(show(argv[1]))
        return
    if argv[:1] == ["summary"]:  # every docs/probes/*.json: its last curve point
        print(summary(sorted((ROOT / "docs" / "probes").glob("*.json"))))
        return
    if argv[:1] == ["profile"]:  # profile DIR [LIMIT]: GQA families, MME-P subtasks
        print(profile(argv[1], int(argv[2]) if len(argv) > 2 else 300))
        return
    if argv[:1] == ["position"]:  # position DIR: is the cell in the image tokens?
        print(position(argv[1]))
        return
    if argv[:1] == ["hidden"]:  # hidden DIR [LIMIT]: accuracy with / without occluders
        print(hidden(argv[1], int(argv[2]) if len(argv) > 2 else 300))
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
    p.add_argument("--train-tower", action="store_true",
                   help="train the vision tower too (a diagnostic: teachers keep it frozen)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    stages = plan.parse(a.plan)
    source = a.start_from or str(ROOT / "teachers" / a.teacher)
    model, processor = models.load(source)
    model.model.vision_tower.requires_grad_(a.train_tower)  # frozen, as in teacher training
    start = time.perf_counter()
    curves = ProbeCurves(a.every, a.limit, processor, start)
    collator, losses = ConversationCollator(processor, config=model.config), LossLog()
    curves.record(model, "start", 0)
    log = plan.run(model, collator, losses, stages, a.seed, curves=curves,
                   skills={kind: (lambda m, occlusion, f=skill: f(m, processor, limit=a.limit,
                                                                 occlusion=occlusion))
                           for kind, skill in evaluate.SKILLS.items()})
    if a.save:
        models.save(model, processor, ROOT / a.save, command="teacher")
    result = {"name": a.name, "teacher": a.teacher, "from": source, "plan": a.plan,
              "seed": a.seed, "every": a.every, "limit": a.limit, "dtype": "float32",
              "train_tower": a.train_tower, "occlusion": shapes.OCCLUSION,
              "command": command,
              "machine": machine.signature(1), "stages": log,
              "wall_s": round(time.perf_counter() - start, 1),
              "curves": curves.points, "loss": losses.rows}
    out = ROOT / "docs" / "probes" / f"{a.name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
