"""An lmms-eval model that loads any studylib or transformers image-text-to-text checkpoint.

lmms-eval's own `llava` / `llava_hf` wrappers cannot load pruned checkpoints (layers of
different widths, lmms-eval issue #634); this one loads through `studylib.models.load`, so
uniform and non-uniform pruned, recovered and unpruned models all work:

    lmms-eval --model studylib --model_args pretrained=DIR[,batch_size=64,device=cuda,dtype=bfloat16] \
        --tasks mmmu_val,gqa,scienceqa_img,mme,pope

It is registered through the `lmms_eval.models` entry point (pyproject.toml) and imports
lmms-eval, so it only loads in the lmms-eval environment (`make lmms-env`).
"""

from __future__ import annotations

import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest
from tqdm.auto import tqdm

from studylib import models
from studylib.evaluation import choice
from studylib.evaluation.evaluate import chat_prompts, generate_texts


def manifest() -> ModelManifest:
    """What the `lmms_eval.models` entry point hands lmms-eval's model registry."""
    return ModelManifest(model_id="studylib", simple_class_path="studylib.harness.plugin.Studylib")


def _as_bool(value) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


class Studylib(lmms):
    """Greedy generation and log-likelihoods, batched, with `studylib eval`'s own functions."""

    is_simple = True

    def __init__(self, pretrained: str, batch_size: int | str = 64, device: str | None = None,
                 dtype: str = "float32", max_new_tokens: int | str = 16,
                 trust_remote_code: bool | str = False, **kwargs) -> None:
        super().__init__()
        if kwargs:
            raise ValueError(f"unknown model_args for studylib: {', '.join(kwargs)}")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.processor = models.load(pretrained, dtype=dtype, device=device,
                                                 trust_remote_code=_as_bool(trust_remote_code))
        self.model.eval()
        self.batch_size_per_gpu = int(batch_size)
        self.default_max_new_tokens = int(max_new_tokens)
        self._device = torch.device(device)

    @property
    def device(self):
        return self._device

    @property
    def batch_size(self):
        return self.batch_size_per_gpu

    def _visual(self, args) -> object:
        doc_to_visual, doc_id, task, split = args[2], args[3], args[4], args[5]
        visuals = doc_to_visual(self.task_dict[task][split][doc_id])
        if len(visuals) != 1:
            raise ValueError(f"studylib models take one image per question; {task} doc "
                             f"{doc_id} has {len(visuals)}")
        return visuals[0]

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Requests are grouped by task and generation settings, each group in doc order.

        `generate_texts` sorts a group by prompt length itself, so the batches are the ones
        `studylib eval` forms for the same items: the answers agree token for token.
        """
        groups: dict[tuple, list[int]] = {}
        for i, req in enumerate(requests):
            gen_kwargs = req.args[1]
            key = (req.args[4], repr(sorted(gen_kwargs.items())))
            groups.setdefault(key, []).append(i)
        answers: list[str] = [""] * len(requests)
        for key, idx in tqdm(groups.items(), desc="studylib generate", disable=self.rank != 0):
            gen_kwargs = dict(requests[idx[0]].args[1])
            if gen_kwargs.get("do_sample") or float(gen_kwargs.get("temperature", 0) or 0) > 0:
                raise ValueError(f"{key[0]}: the studylib plugin decodes greedily only")
            until = gen_kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            texts = generate_texts(
                self.model, self.processor, [requests[i].args[0] for i in idx],
                [self._visual(requests[i].args) for i in idx], batch_size=self.batch_size,
                max_new_tokens=int(gen_kwargs.get("max_new_tokens", self.default_max_new_tokens)),
                progress=False)
            for i, text in zip(idx, texts, strict=True):
                for stop in until:
                    if stop:
                        text = text.split(stop)[0]
                answers[i] = text
                self.cache_hook.add_partial("generate_until", (requests[i].args[0], gen_kwargs),
                                            text)
        return answers

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """log p(continuation | image, context), summed over the continuation's tokens (higher
        is likelier, as lmms-eval's API says), and whether greedy decoding gives it.

        Scored by `choice.option_logprobs`, the code `studylib eval` scores cloze multiple
        choice with: the context is one user turn, the continuation's tokens follow the
        assistant prefix with no delimiter, as the training collator encodes an answer. The
        requests of one doc and context (a multiple-choice item's options) share one encoded
        prompt and image, and a task's docs go in doc order, so the batches are the ones
        `studylib eval` forms for the same items.
        """
        groups: dict[str, dict[tuple, list[int]]] = {}
        for i, req in enumerate(requests):
            context, _, _, doc_id, task, split = req.args
            groups.setdefault(task, {}).setdefault((split, doc_id, context), []).append(i)
        out: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        for docs in tqdm(groups.values(), desc="studylib loglikelihood",
                         disable=self.rank != 0):
            contexts = [context for _, _, context in docs]
            images = [self._visual(requests[idx[0]].args) for idx in docs.values()]
            conts = [[requests[i].args[1] for i in idx] for idx in docs.values()]
            scores = choice.option_logprobs(
                self.model, self.processor, chat_prompts(self.processor, contexts), images,
                conts, batch_size=self.batch_size, progress=False)
            for idx, doc_scores in zip(docs.values(), scores, strict=True):
                for i, score in zip(idx, doc_scores, strict=True):
                    out[i] = (score.logprob, score.greedy)
                    self.cache_hook.add_partial("loglikelihood", requests[i].args[:2], out[i])
        return out

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("the studylib plugin answers single-turn tasks only")
