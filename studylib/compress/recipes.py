"""Recovery recipes as data: one dataclass, named presets, YAML files.

Every recipe of the paper's Section 3.2 is a point in one space,
L = alpha * L_sft + beta * L_logits + gamma * L_match, plus which parameters train.
A new recipe is a new preset or a YAML file, never a new code path.

Hidden-state matching (`match_layers`) uses decoder-layer *outputs before the final norm*:
index -1 is the output of the last decoder layer, -2 of the one before, and so on. Indices
count from the end in both models, so a layer-pruned student's last layer is matched to
the teacher's last layer (last-to-last), as the paper matches "the last LLM layer". We do
not use transformers' `hidden_states[-1]`, which is *after* the final norm (the authors'
code matches that one): the norm's learned gain would rescale the L2 per channel and let
the student match by moving the norm instead of its representations.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal

import yaml

from studylib.compress.losses import LOGIT_LOSSES
from studylib.errors import StudyError, check_positive


@dataclasses.dataclass(frozen=True)
class RecoveryRecipe:
    """Loss weights and what trains. `train="mm"`: projector only; `"mm+lora"`: projector
    fully + LoRA on the LLM's linear layers (merged into the weights before saving)."""

    name: str = "custom"
    alpha: float = 1.0  # SFT cross-entropy on answer tokens
    beta: float = 0.0  # logits KD
    gamma: float = 0.0  # hidden-state L2
    # forward D_KL(p_t||q_s), reverse D_KL(q_s||p_t), their skew forms, or GKD's JSD
    # (`losses.LOGIT_LOSSES`, module doc of `studylib.compress.losses`)
    logits: Literal["kl", "rkl", "skl", "srkl", "jsd"] = "kl"
    skew: float = 0.1  # skl / srkl: the share of the other distribution mixed in (DistiLLM's)
    jsd_beta: float = 0.5  # jsd: the mixture weight of the teacher, in (0, 1) (GKD's, TRL's)
    tau: float = 2.0
    match_layers: tuple[int, ...] = (-1,)  # decoder-layer outputs before the final norm
    train: Literal["mm", "mm+lora"] = "mm+lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lr: float = 1e-3
    epochs: float = 1.0
    batch_size: int = 16
    warmup_ratio: float = 0.03
    logging_steps: int = 5
    # Teacher signals: top-k logits cached per (teacher, subset) when > 0 (an approximation
    # of KD; 0 = exact online KD). Hidden states for L2 are cached when `cache_hidden`.
    topk: int = 0
    cache_hidden: bool = True

    def __post_init__(self):
        for key in ("alpha", "beta", "gamma"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise StudyError(f"recipe {self.name!r}: {key} must be a finite number >= 0, "
                                 f"got {value!r}")
        if self.alpha == 0 and self.beta == 0 and self.gamma == 0:
            raise StudyError(f"recipe {self.name!r}: alpha, beta and gamma are all zero "
                             "(nothing to train on)")
        if self.logits not in LOGIT_LOSSES:
            raise StudyError(f"recipe {self.name!r}: logits must be one of "
                             f"{', '.join(LOGIT_LOSSES)}, got {self.logits!r}")
        if not 0 <= self.skew < 1:
            raise StudyError(f"recipe {self.name!r}: skew must be in [0, 1), got {self.skew!r}")
        if not 0 < self.jsd_beta < 1:
            raise StudyError(f"recipe {self.name!r}: jsd_beta must be in (0, 1), "
                             f"got {self.jsd_beta!r}")
        if self.train not in ("mm", "mm+lora"):
            raise StudyError(f"recipe {self.name!r}: train must be 'mm' or 'mm+lora', "
                             f"got {self.train!r}")
        for key in ("tau", "lr", "epochs"):
            check_positive(getattr(self, key), f"recipe {self.name!r}: {key}")
        layers = tuple(self.match_layers) if isinstance(self.match_layers, (list, tuple)) \
            else (self.match_layers,)
        if not layers or any(not isinstance(i, int) or i >= 0 for i in layers):
            raise StudyError(f"recipe {self.name!r}: match_layers must be negative layer "
                             f"indices (-1 = last decoder layer), got {self.match_layers!r}")
        object.__setattr__(self, "match_layers", layers)
        for key in ("lora_r", "lora_alpha", "batch_size"):
            if int(getattr(self, key)) < 1:
                raise StudyError(f"recipe {self.name!r}: {key} must be >= 1")
        if self.topk < 0:
            raise StudyError(f"recipe {self.name!r}: topk must be >= 0, got {self.topk!r}")

    @property
    def needs_teacher(self) -> bool:
        return self.beta > 0 or self.gamma > 0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["match_layers"] = list(self.match_layers)
        return d


def _preset(name: str, **kw) -> RecoveryRecipe:
    return RecoveryRecipe(name=name, **kw)


# The paper's Table 3/4 recipes (KD weights 1 each, as L = alpha L_sft + beta L_kd + gamma L_l2),
# Appendix B's last-k hidden-layer ablation, and the distillation losses that came after it.
PRESETS: dict[str, RecoveryRecipe] = {
    r.name: r
    for r in (
        _preset("sft-mm", alpha=1.0, train="mm"),
        _preset("sft", alpha=1.0),
        _preset("kl", alpha=0.0, beta=1.0, logits="kl"),
        _preset("rkl", alpha=0.0, beta=1.0, logits="rkl"),
        _preset("l2", alpha=0.0, gamma=1.0),
        _preset("kl+l2", alpha=0.0, beta=1.0, gamma=1.0, logits="kl"),
        _preset("rkl+l2", alpha=0.0, beta=1.0, gamma=1.0, logits="rkl"),
        _preset("sft+kl", alpha=1.0, beta=1.0, logits="kl"),
        _preset("sft+rkl", alpha=1.0, beta=1.0, logits="rkl"),
        _preset("sft+l2", alpha=1.0, gamma=1.0),
        _preset("sft+kl+l2", alpha=1.0, beta=1.0, gamma=1.0, logits="kl"),
        _preset("sft+rkl+l2", alpha=1.0, beta=1.0, gamma=1.0, logits="rkl"),
        _preset("sft+l2@last2", alpha=1.0, gamma=1.0, match_layers=(-2, -1)),
        _preset("sft+l2@last3", alpha=1.0, gamma=1.0, match_layers=(-3, -2, -1)),
        # after the paper: DistiLLM's skew KL / skew reverse KL at its skew 0.1, and GKD's
        # generalised JSD at TRL's default beta 0.5
        _preset("sft+skl", alpha=1.0, beta=1.0, logits="skl", skew=0.1),
        _preset("sft+srkl", alpha=1.0, beta=1.0, logits="srkl", skew=0.1),
        _preset("sft+jsd", alpha=1.0, beta=1.0, logits="jsd", jsd_beta=0.5),
    )
}

FIELDS = {f.name for f in dataclasses.fields(RecoveryRecipe)}


def from_dict(data: dict[str, Any], name: str = "custom") -> RecoveryRecipe:
    """A recipe from a mapping; unknown keys are errors. `base: <preset>` starts from a preset."""
    if not isinstance(data, dict):
        raise StudyError(f"recipe {name!r} must be a mapping, got {type(data).__name__}")
    data = dict(data)
    base = data.pop("base", None)
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise StudyError(f"recipe {name!r}: unknown key {unknown[0]!r}; "
                         f"known: base, {', '.join(sorted(FIELDS))}")
    start: dict[str, Any] = {}
    if base is not None:
        start = get(str(base)).to_dict()
    start.update(data)
    start["name"] = data.get("name", name)  # the file's name, not its base preset's
    if isinstance(start.get("match_layers"), list):
        start["match_layers"] = tuple(start["match_layers"])
    for field in dataclasses.fields(RecoveryRecipe):
        # YAML 1.1 reads "1e-3" as a string: coerce numbers, and name the field if it fails.
        kind = {"float": float, "int": int}.get(str(field.type))
        value = start.get(field.name)
        if kind and value is not None and not isinstance(value, bool):
            try:
                start[field.name] = kind(value)
            except (TypeError, ValueError):
                raise StudyError(f"recipe {name!r}: {field.name} must be a number, "
                                 f"got {value!r}") from None
    try:
        return RecoveryRecipe(**start)
    except TypeError as exc:
        raise StudyError(f"recipe {name!r}: {exc}") from None


def get(name_or_path: str | Path | RecoveryRecipe) -> RecoveryRecipe:
    """A preset by name, or a recipe from a YAML file (`.yaml`/`.yml`)."""
    if isinstance(name_or_path, RecoveryRecipe):
        return name_or_path
    text = str(name_or_path)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise StudyError(f"recipe file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise StudyError(f"recipe file {path} is not valid YAML: "
                             f"{str(exc).splitlines()[0]}") from None
        return from_dict(data, name=path.stem)
    raise StudyError(f"unknown recipe {text!r}; choose from {', '.join(PRESETS)} "
                     "or pass a .yaml file")
