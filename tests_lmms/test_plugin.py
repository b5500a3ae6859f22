"""The lmms-eval model plugin, in the lmms-eval environment (`make lmms-check` runs these).

Kept out of tests/ because the core environment has no lmms-eval (nor may it: lmms-eval
needs torchvision, which breaks the core CPU torch).
"""

from pathlib import Path

import pytest
import torch
from lmms_eval.api.instance import Instance, unwrap_generation_output
from lmms_eval.models import get_model
from lmms_eval.tasks import TaskManager, get_task_dict

from studylib.evaluation import choice, evaluate
from studylib.harness import lmms, tasks
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


def _reference_loglikelihood(lm, question, image, continuation):
    """The definition, independently: one unbatched pass over prompt + continuation tokens."""
    prompt = evaluate.chat_prompts(lm.processor, [question])[0]
    ctx = lm.processor(text=[prompt], images=[image], return_tensors="pt")
    cont = lm.processor.tokenizer(continuation, add_special_tokens=False,
                                  return_tensors="pt")["input_ids"]
    ids = torch.cat([ctx["input_ids"], cont], dim=1)
    with torch.no_grad():
        logits = lm.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                          pixel_values=ctx["pixel_values"].to(lm.model.dtype)).logits
    logp = torch.log_softmax(logits[0, -cont.shape[1] - 1 : -1].float(), dim=-1)
    return float(logp.gather(-1, cont[0][:, None]).sum())


def test_loglikelihood_of_arbitrary_requests(plugin):
    """Several tokens, a leading space, docs interleaved, one context text on two docs' images:
    each request scored alone, as its definition."""
    lm, items = plugin
    question = "What is in the image?\nAnswer the question using a single word or phrase."
    asks = [(items[0].prompt, "purple circle", 0), (items[1].prompt, " red", 1),
            (question, "red", 2), (items[0].prompt, "two", 0), (question, "red", 3)]
    reqs = [_request("loglikelihood", (q, cont, _visual, i, "t", "test"), i)
            for q, cont, i in asks]
    got = lm.loglikelihood(reqs)
    for (q, cont, i), (ll, _) in zip(asks, got, strict=True):
        assert ll == pytest.approx(_reference_loglikelihood(lm, q, items[i].image, cont),
                                   rel=1e-4, abs=1e-4)
    assert got[2][0] != got[4][0]  # same text, another image


@pytest.fixture(scope="module")
def sqa_task(plugin, tmp_path_factory):
    """The exported SQA task as lmms-eval builds it: its requests, from its own YAML."""
    lm, _ = plugin
    tmp = tmp_path_factory.mktemp("lmms")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_DATASETS_CACHE", str(tmp / "hf-cache"))
        task_dir = lmms.export_tasks(tmp / "tasks", ["SQA"], limit=8, seed=0)
        manager = TaskManager(include_path=str(task_dir), include_defaults=False)
        task = get_task_dict([tasks.TASKS["SQA"]], manager)[tasks.TASKS["SQA"]]
        task.build_all_requests()
    lm.task_dict[tasks.TASKS["SQA"]] = task.dataset
    return task, evaluate.select(suite.benchmark("SQA"), 8, seed=0)


def test_the_exported_cloze_task_scores_as_studylib_eval(plugin, sqa_task):
    """lmms-eval's multiple_choice requests are the cloze question and each option's exact
    text; the plugin's log-likelihoods are `choice.option_logprobs`' own numbers, and the
    task's process_results gives `studylib eval`'s cloze letters."""
    lm, _ = plugin
    task, items = sqa_task
    reqs = sorted(task.instances, key=lambda r: (r.doc_id, r.idx))
    assert [(r.args[0], r.args[1]) for r in reqs] == [
        (choice.cloze_question(it), option) for it in items for option in it.options]
    got = lm.loglikelihood(reqs)
    chats = evaluate.chat_prompts(lm.processor, [choice.cloze_question(it) for it in items])
    ours = choice.option_logprobs(lm.model, lm.processor, chats, [it.image for it in items],
                                  [it.options for it in items], batch_size=lm.batch_size,
                                  progress=False)
    assert got == [(s.logprob, s.greedy) for scores in ours for s in scores]
    for req, result in zip(reqs, got, strict=True):  # as lmms-eval's evaluator hands them on
        req.resps = [unwrap_generation_output(result)[0]]
    task.apply_filters()
    docs = task.dataset["test"]
    letters = [task.process_results(docs[d], [r.filtered_resps["none"]
                                              for r in reqs[4 * d : 4 * d + 4]])
               ["score"]["prediction"] for d in range(len(items))]
    assert letters == evaluate.cloze_answers(lm.model, lm.processor, items,
                                             batch_size=lm.batch_size, progress=False)
    assert len(set(letters)) > 1  # not one letter for every item
