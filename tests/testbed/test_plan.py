"""Continuation plans (testbed v3): the grammar, the records each stage draws, and a plan
run on a saved teacher equal to the same plan run inside training from scratch."""

import json
import re
from pathlib import Path

import pytest
import torch
from clirun import run

from studylib import machine, models
from studylib.errors import StudyError
from studylib.evaluation import evaluate, metrics
from studylib.testbed import plan, shapes, suite, teacher_recipes, teachers

TEACHERS = Path(__file__).resolve().parents[2] / "teachers"


def test_a_plan_parses_into_stages_with_defaults_and_overrides():
    lookup, mix = plan.parse("lookup:250:balanced=1:lr=2e-4, mix:300:open=0.25:w.gqa=8")
    assert lookup["kind"] == "lookup" and lookup["steps"] == 250
    assert lookup["lr"] == 2e-4 and lookup["balanced"] == 1 and lookup["bs"] == 16
    assert lookup["caption"] == 0.0 and lookup["mix"] == plan.KINDS["lookup"]
    assert mix["open"] == 0.25 and mix["mix"]["gqa"] == 8 and mix["lr"] == 5e-4
    assert plan.KINDS["mix"]["gqa"] != 8  # not mutated


@pytest.mark.parametrize("text, needle", [
    ("look:100", "unknown stage kind 'look'"),
    ("lookup", "needs a positive step count"),
    ("lookup:0", "needs a positive step count"),
    ("lookup:10:lr=fast", "'lr=fast' is not key=number"),
    ("lookup:10:speed=2", "unknown key 'speed'"),
    ("lookup:10:w.cats=1", "unknown key 'w.cats'"),
    ("lookup:10:balanced=3", "balanced is 0, 1 or 2"),
    ("mix:10:open=1", "open + spatial + spatialyn in [0, 1)"),
    ("lookup:10:until=101", "until is a POPE accuracy in [0, 100]"),
])
def test_a_malformed_plan_is_refused_naming_its_part(text, needle):
    with pytest.raises(StudyError, match=re.escape(needle)):
        plan.parse(text)


def test_every_named_plan_parses():
    for plans in plan.NAMED.values():
        assert set(plans) == {"toy-llava", "toy-bunny", "toy-internvl"}
        for text in plans.values():
            assert plan.parse(text)[0]["kind"] == "lookup"


def test_balanced_batches_hold_as_many_yes_as_no_answers():
    (stage,) = plan.parse("lookup:6:balanced=1:bs=8")
    records = plan.stage_records(stage, seed=21)
    assert len(records) == 48
    batches = [records[i:i + 8] for i in range(0, 48, 8)]
    assert all(sum(plan.yes_no_balance(r) for r in b) == 0 for b in batches)
    unbalanced = plan.stage_records({**stage, "balanced": 0}, seed=21)
    assert any(sum(plan.yes_no_balance(r) for r in unbalanced[i:i + 8]) for i in range(0, 48, 8))


def test_stages_have_no_descriptions_and_open_records_answer_with_the_option_text():
    (mix,) = plan.parse("mix:4:bs=10:open=0.5")
    records = plan.stage_records(mix, seed=3)
    assert len(records) == 40 and plan.composition(records)["caption"] == 0
    opened = [r for r in records if r["id"].startswith("open-")]
    assert len(opened) == 20
    for r in opened:
        questions, answers = r["conversations"][0::2], r["conversations"][1::2]
        assert all(q["value"].endswith(shapes.SHORT_ANSWER) and "Options:" not in q["value"]
                   for q in questions)
        assert all(a["value"] not in shapes.LETTERS for a in answers)
    assert plan.stage_records(mix, seed=3) == records  # a pure function of stage and seed


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()])


def test_a_continued_teacher_equals_one_trained_with_the_plan(tmp_path):
    """`continue_teacher` on a saved teacher = `train_teacher(plan=...)` from scratch: the
    committed v3 teachers can be made either way."""
    text = "lookup:3:balanced=1:bs=8,open:2:bs=4,mix:2:bs=8:open=0.25"
    small = dict(instruct={"n_images": 32})
    teachers.train_teacher("toy-llava", tmp_path / "base", size="micro", seed=1, **small)
    whole = teachers.train_teacher("toy-llava", tmp_path / "whole", size="micro", seed=1,
                                   plan=text, plan_seed=21, **small)
    # The source was trained on another machine: its record stays the recipe's machine.
    summary_file = tmp_path / "base" / "training_summary.json"
    elsewhere = {**machine.signature(), "cpu": "another CPU"}
    summary_file.write_text(json.dumps({**json.loads(summary_file.read_text()),
                                        "machine": elsewhere}))
    cont = teachers.continue_teacher(tmp_path / "base", tmp_path / "cont", text, seed=21)
    (log,) = whole["plans"]
    assert [s["steps_done"] for s in log["stages"]] == [3, 2, 2] and log["steps"] == 7
    assert cont["plans"][0]["stages"][0]["composition"] == log["stages"][0]["composition"]
    assert cont["machine"] == elsewhere and cont["plans"][0]["machine"] == machine.signature()
    assert teachers.machines(cont) == [elsewhere, machine.signature()]
    assert (cont["plans"][0]["data_sha256"] == log["data_sha256"]
            == teacher_recipes.plan_data_sha256(text, 21) != teacher_recipes.plan_data_sha256(text, 22))
    assert cont["continued_from"]["path"] == str(tmp_path / "base")
    assert cont["loss_log"][-1]["step"] == whole["loss_log"][-1]["step"]
    a, _ = models.load(tmp_path / "whole")
    b, _ = models.load(tmp_path / "cont")
    assert torch.equal(_flat(a), _flat(b))
    base, _ = models.load(tmp_path / "base")
    assert not torch.equal(_flat(a), _flat(base))
    again = teachers.continue_teacher(tmp_path / "cont", None, "mix:1:bs=4", seed=5)
    assert [p["steps"] for p in again["plans"]] == [7, 1]
    names = [(name, steps) for name, steps, _ in teachers.stage_steps(again)]
    assert names[-4:] == [("+lookup", 3), ("+open", 2), ("+mix", 2), ("+mix", 1)]
    assert again["curves"] == whole["curves"] == []  # the micro recipe scores no curves
    with pytest.raises(StudyError, match="data seed 5, not 3021"):
        teachers.retrain_arguments(again)
    # Continued with the next stage's data seed, it retrains as one longer plan.
    joined = teachers.continue_teacher(tmp_path / "cont", tmp_path / "joined", "mix:1:bs=4",
                                       seed=plan.data_seed(21, 3))
    args = teachers.retrain_arguments(joined)
    assert args["plan"] == f"{text},mix:1:bs=4" and args["plan_seed"] == 21
    teachers.train_teacher("toy-llava", tmp_path / "one", **args, **small)
    c, _ = models.load(tmp_path / "joined")
    d, _ = models.load(tmp_path / "one")
    assert torch.equal(_flat(c), _flat(d))


@pytest.mark.parametrize("extra, needle", [
    (["--plan", "lookup:ten"], "needs a positive step count"),
    (["--from", "{teacher}"], "--from continues a saved teacher through a plan: give --plan"),
    (["--from", "{teacher}", "--plan", "mix:1", "--arch", "toy-llava"],
     "is not a toy-llava teacher"),
])
def test_the_teacher_command_refuses_a_bad_plan_before_any_work(tmp_path, capsys, extra, needle):
    teacher = TEACHERS / "toy-bunny"
    argv = ["teacher", "--arch", "toy-bunny", "--out", str(tmp_path / "out"),
            *[a.format(teacher=teacher) for a in extra]]  # argparse: the last --arch wins
    code, out, err = run(argv, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and needle in err, err[-300:]
    assert not (tmp_path / "out").exists()


def test_an_until_stage_ends_when_its_skill_is_there(tmp_path):
    teachers.train_teacher("toy-llava", tmp_path / "base", size="micro", seed=1,
                           instruct={"n_images": 32})
    checked, worlds = [], []

    def skill(model, processor, occlusion=None):
        checked.append(model.training)
        worlds.append(occlusion)
        model.eval()  # as evaluation does; the gate must put training mode back
        return [40.0, 60.0, 90.0, 95.0][len(checked) - 1]

    summary = teachers.continue_teacher(
        tmp_path / "base", None, "lookup:20:bs=4:until=85:check=3:occlusion=0.2,mix:2:bs=4",
        seed=0, skills={"lookup": skill})
    lookup, mix = summary["plans"][0]["stages"]
    assert lookup["steps_done"] == 9 and lookup["passed"] == {"step": 9, "value": 90.0}
    assert mix["steps_done"] == 2 and "passed" not in mix
    assert len(checked) == 3 and all(checked)
    assert worlds == [0.2] * 3  # the skill is read in the stage's own world
    never = teachers.continue_teacher(tmp_path / "base", None, "lookup:4:bs=4:until=85:check=2",
                                      seed=0, skills={"lookup": lambda m, p, **kw: 10.0})
    assert never["plans"][0]["stages"][0]["passed"] is None
    assert never["plans"][0]["stages"][0]["steps_done"] == 4
    with pytest.raises(StudyError, match="a lookup stage with until= needs a skill"):
        teachers.train_teacher("toy-llava", None, size="micro", plan="lookup:4:until=80")


def test_each_until_stage_is_gated_by_the_skill_of_its_kind(tmp_path):
    teachers.train_teacher("toy-llava", tmp_path / "base", size="micro", seed=1,
                           instruct={"n_images": 32})
    asked = []

    def skill(kind, values):
        def check(model, processor, occlusion=None):
            asked.append(kind)
            return values[sum(k == kind for k in asked) - 1]
        return check

    summary = teachers.continue_teacher(
        tmp_path / "base", None, "lookup:6:bs=4:until=85:check=2,spatial:8:bs=4:until=60:check=2",
        seed=0, skills={"lookup": skill("lookup", [90.0]),
                        "spatial": skill("spatial", [20.0, 30.0, 70.0])})
    lookup, spatial = summary["plans"][0]["stages"]
    assert asked == ["lookup", "spatial", "spatial", "spatial"]
    assert lookup["passed"] == {"step": 2, "value": 90.0} and lookup["steps_done"] == 2
    assert spatial["passed"] == {"step": 6, "value": 70.0} and spatial["steps_done"] == 6
    with pytest.raises(StudyError, match="a spatial stage with until= needs a skill"):
        teachers.continue_teacher(tmp_path / "base", None, "spatial:4:until=50", seed=0,
                                  skills={"lookup": skill("lookup", [90.0])})


def test_the_spatial_skill_reads_gqa_position_and_size_only_and_the_mme_skill_all_of_mme_p():
    model, processor = models.load(TEACHERS / "toy-bunny")
    items = [it for it in suite.benchmark("GQA", split="val") if it.subset in ("position", "size")]
    first = items[:12]
    answers = evaluate.generate_answers(model, processor, first, progress=False)
    expected = 100 * sum(metrics.is_correct("GQA", a, it.answer)
                         for a, it in zip(answers, first, strict=True)) / len(first)
    assert evaluate.spatial_accuracy(model, processor, limit=12) == pytest.approx(expected)
    assert {it.subset for it in first} == {"position", "size"}
    assert set(evaluate.SKILLS) <= set(plan.KINDS)
    mme = evaluate.evaluate(model, processor, benchmarks=("MME-P",), limit=20, split="val",
                            progress=False).items
    assert evaluate.mme_accuracy(model, processor, limit=20) == pytest.approx(
        100 * mme.correct.mean())


def test_a_spatial_stage_asks_where_how_large_and_how_two_objects_lie():
    (stage,) = plan.parse("spatial:5:bs=8")
    records = plan.stage_records(stage, seed=4)
    assert len(records) == 40 and all(r["id"].startswith("spatial-") for r in records)
    counts = plan.composition(records)
    assert counts["letter"] == counts["caption"] == 0 and counts["short"] > 0
    assert 0.35 < counts["yes_share"] < 0.65
    asked = " ".join(c["value"] for r in records for c in r["conversations"][0::2])
    assert all(w in asked for w in ("Where is", "What size", "left of", "above", "cell?"))
    (mix,) = plan.parse("mix:4:bs=10:open=0.2:spatial=0.3")
    kinds = [r["id"].split("-")[0] for r in plan.stage_records(mix, seed=3)]
    assert (kinds.count("open"), kinds.count("spatial"), len(kinds)) == (8, 12, 40)
    (yes_no,) = plan.parse("spatialyn:2:bs=8")
    only = plan.composition(plan.stage_records(yes_no, seed=4))
    assert only["short"] == 0 and only["yes/no"] == 64
    with pytest.raises(StudyError, match="open \\+ spatial \\+ spatialyn in \\[0, 1\\)"):
        plan.parse("mix:4:open=0.5:spatial=0.5")


def test_mmerest_asks_mme_without_its_lookups():
    def questions(text):
        (stage,) = plan.parse(text)
        return [c["value"] for r in plan.stage_records(stage, seed=5)
                for c in r["conversations"][0::2]]
    # MME's lookup subtasks (existence, colour, position) all ask "Is there a/an ..."
    assert any(q.startswith("Is there") for q in questions("mme:4:bs=16"))
    rest = questions("mme:4:bs=16:w.mme=0:w.mmerest=1")
    assert len(rest) == 256 and not any(q.startswith("Is there") for q in rest)


def test_retrain_arguments_carry_a_plan_and_join_a_continuation_of_its_seeds():
    base = {"size": "deep", "seed": 0}
    assert teachers.retrain_arguments(base) == base
    planned = {**base, "plans": [{"text": "mix:3,mme:2", "seed": 21}]}
    want = {**base, "plan": "mix:3,mme:2", "plan_seed": 21}
    assert teachers.retrain_arguments(planned) == want
    continued = {**planned, "continued_from": {"path": "teachers/x"}}
    assert teachers.retrain_arguments(continued) == want  # continue_teacher = train_teacher
    # a third stage's data seed (plan.data_seed(21, 2)) continues the plan: one longer plan
    third = {**planned, "plans": [*planned["plans"], {"text": "gqa:4", "seed": 2021}]}
    assert teachers.retrain_arguments(third) == {**want, "plan": "mix:3,mme:2,gqa:4"}
    with pytest.raises(StudyError, match="data seed 21, not 2021"):
        teachers.retrain_arguments({**planned, "plans": planned["plans"] * 2})