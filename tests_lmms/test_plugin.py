"""The lmms-eval model plugin, in the lmms-eval environment (`make lmms-check` runs these).

Kept out of tests/ because the core environment has no lmms-eval (nor may it: lmms-eval
needs torchvision, which breaks the core CPU torch).
"""

from pathlib import Path

import pytest
import torch
from lmms_eval.api.instance import Instance
from lmms_eval.models import get_model

from studylib.evaluation import evaluate
from studylib.harness.plugin import Studylib
from studylib.testbed import suite

TEACHER = Path(__file__).resolve().parents[1] / "teachers" / "toy-llava"
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def plugin():
    lm = get_model("studylib").create_from_arg_string(f"pretrained={TEACHER}", {"batch_size": 8})
    items = evaluate.select(suite.benchmark("GQA"), 12, seed=0)
    lm.task_dict = {"t": {"test": [{"image": it.image, "prompt": it.prompt} for it in items]}}
    return lm, items


def _visual(doc):
    return [doc["image"]]


def _request(kind, args, i):
    return Instance(request_type=kind, arguments=args, idx=0,
                    metadata={"task": "t", "doc_id": i, "repeats": 1})


def test_the_entry_point_registers_the_plugin(plugin):
    lm, _ = plugin
    assert get_model("studylib") is Studylib
    assert isinstance(lm, Studylib) and lm.batch_size == 8


def test_generate_until_answers_as_studylib_eval(plugin):
    lm, items = plugin
    reqs = [_request("generate_until", (it.prompt, {"max_new_tokens": 4, "until": ["\n"]},
                                       _visual, i, "t", "test"), i)
            for i, it in enumerate(items)]
    ours = evaluate.generate_answers(lm.model, lm.processor, items, batch_size=8, progress=False)
    assert lm.generate_until(reqs) == ours
    assert sum(a == it.answer for a, it in zip(ours, items, strict=True)) > 0  # a real answer


def test_loglikelihood_marks_the_greedy_answer_and_ranks_it_first(plugin):
    lm, items = plugin
    answers = evaluate.generate_answers(lm.model, lm.processor, items[:4], progress=False)
    for i, (it, answer) in enumerate(zip(items[:4], answers, strict=True)):
        greedy_ll, greedy = lm.loglikelihood(
            [_request("loglikelihood", (it.prompt, answer, _visual, i, "t", "test"), i)])[0]
        assert greedy and greedy_ll < 0
        other = "purple" if answer != "purple" else "green"
        other_ll, other_greedy = lm.loglikelihood(
            [_request("loglikelihood", (it.prompt, other, _visual, i, "t", "test"), i)])[0]
        assert not other_greedy and other_ll < greedy_ll


def test_unknown_model_args_are_refused():
    with pytest.raises(ValueError, match="unknown model_args for studylib: temperature"):
        Studylib(pretrained=str(TEACHER), temperature=0.2)
