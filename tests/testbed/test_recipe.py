"""The teacher recipe: overrides, the validation split and the learning curves."""

import pytest

from studylib.errors import StudyError
from studylib.evaluation.evaluate import evaluate, option_lookup_accuracy
from studylib.testbed import suite, teacher_recipes, teachers, toy


def test_recipe_overrides_merge_into_a_stage_and_unknown_keys_are_refused():
    recipe = teacher_recipes.resolve("micro", {"instruct": {"lr": 1e-4}, "curve_every": 5})
    assert recipe["instruct"]["lr"] == 1e-4
    assert recipe["instruct"]["turns"] == teacher_recipes.TEACHER_RECIPES["micro"]["instruct"]["turns"]
    assert recipe["curve_every"] == 5
    assert teacher_recipes.TEACHER_RECIPES["micro"]["instruct"]["lr"] != 1e-4  # not mutated
    with pytest.raises(StudyError, match="unknown recipe key 'lr'"):
        teacher_recipes.resolve("micro", {"lr": 1e-4})


def test_every_recipe_has_every_llm_stage():
    assert set(teacher_recipes.TEACHER_RECIPES) == set(toy.ARCHS["toy-llava"])
    for recipe in teacher_recipes.TEACHER_RECIPES.values():
        assert set(teacher_recipes.STAGES) <= set(recipe)
        assert recipe["dtype"] in teacher_recipes.DTYPES
    assert teacher_recipes.TEACHER_RECIPES[toy.TEACHER_SIZE]["curve_every"] > 0


def test_a_recipe_names_its_dtype_and_new_recipes_train_in_the_chosen_one():
    assert teacher_recipes.TEACHER_RECIPES["micro"]["dtype"] == teacher_recipes.TRAINING_DTYPE == "float32"
    assert teacher_recipes.resolve("micro", {"dtype": "bfloat16"})["dtype"] == "bfloat16"
    with pytest.raises(StudyError, match="unknown dtype 'float16'"):
        teacher_recipes.resolve("micro", {"dtype": "float16"})


def test_the_shallow_recipe_draws_mme_against_decoys_and_the_deep_one_does_not():
    """v4's recipe is v3's (`deep`) in float32 with decoys: the same records but for the
    MME questions' "no" twins (`mme.mme_pair`)."""
    small = {"align": {"n_images": 8}, "binding": {"n": 8}, "lookup": {"n_images": 40},
             "instruct": {"n_images": 40}}
    v3, v4 = (teacher_recipes.resolve(size, small) for size in ("deep", "shallow"))
    assert v4 == {**v3, "dtype": teacher_recipes.TRAINING_DTYPE, "decoys": True}
    old, new = (teacher_recipes.stage_data(r, seed=0) for r in (v3, v4))
    assert old["align"] == new["align"] and old["binding"] == new["binding"]
    assert old["instruct"] != new["instruct"]


@pytest.mark.parametrize("name", ["POPE", "GQA"])
def test_validation_scenes_are_disjoint_from_the_test_scenes(name):
    test = {it.scene_seed for it in suite.benchmark(name)}
    val = {it.scene_seed for it in suite.benchmark(name, split="val")}
    assert val and not test & val
    with pytest.raises(ValueError, match="unknown split"):
        suite.benchmark(name, split="train")


def test_curves_score_the_validation_split_during_training():
    calls = []

    def spy(model, processor, **kwargs):
        calls.append(kwargs)
        return evaluate(model, processor, benchmarks=("POPE", "SQA"), **kwargs)

    def lookup(model, processor):
        return option_lookup_accuracy(model, processor, n=8, split="val")

    summary = teachers.train_teacher("toy-llava", None, size="micro", seed=2, evaluate=spy,
                                     probes={"option_lookup": lookup},
                                     curve_every=4, instruct={"n_images": 64})
    curve_calls = [c for c in calls if c.get("split") == "val"]
    assert curve_calls and all(c["limit"] == teacher_recipes.TEACHER_RECIPES["micro"]["curve_limit"]
                               for c in curve_calls)
    points = summary["curves"]
    assert len(points) == len(curve_calls)
    steps = [p["step"] for p in points]
    assert steps == sorted(steps) and steps[-1] == sum(summary["steps"].values())
    assert {p["stage"] for p in points} == {"align", "binding", "lookup", "instruct"}
    assert {"POPE", "SQA", "SQA (letter)", "option_lookup"} <= set(points[0])
    assert all(0 <= p["option_lookup"] <= 100 for p in points)
    # the final evaluation scores the test split, once
    assert [c for c in calls if "split" not in c] == [{}]


def test_scoring_curves_does_not_change_the_weights():
    """Curves are scored mid-training: they must not touch the training RNG or state."""
    def run(every):
        return teachers.train_teacher("toy-llava", None, size="micro", seed=3,
                                      evaluate=lambda m, p, **kw: evaluate(
                                          m, p, benchmarks=("POPE", "MMMU"), **kw),
                                      probes={"option_lookup": lambda m, p: (
                                          option_lookup_accuracy(m, p, n=4, split="val"))},
                                      curve_every=every, curve_limit=4,
                                      instruct={"n_images": 48})
    with_curves, without = run(3), run(0)
    assert with_curves["curves"] and not without["curves"]
    assert with_curves["prefix_checksums"] == without["prefix_checksums"]
    assert with_curves["final_loss"] == without["final_loss"]
