"""Typed study parameters: the one place every knob and its default lives.

A chapter's params are its dataclass's defaults -- the values the book is built with --
updated by a params file, a `--set key=value` or the overrides the runner injects into the
notebook (`studylib.study.params_file` turns those into a validated object). Smoke-sized
runs are the files' `smoke` profiles.

Why dataclasses with strict checks rather than free dicts: a typo in a knob (`ratio` for
`ratios`) would otherwise silently run the default, and a run grid costs hours.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from studylib.compress import prune, recipes
from studylib.errors import (
    StudyError,
    check,
    check_at_least,
    check_distinct,
    check_known,
    check_ratio,
)
from studylib.evaluation.measure import ARCHS
from studylib.study.params_base import StudyParams  # noqa: F401  (re-exported)
from studylib.study.provenance import checkpoint_fingerprint, results_fingerprint


@dataclasses.dataclass(frozen=True)
class TestbedParams(StudyParams):
    """00_testbed: the data, the models and the teacher's scores against chance."""
    STUDY: typing.ClassVar[str] = "00_testbed"
    n_scenes: int = 6  # example scenes rendered in the data section
    examples_per_benchmark: int = 2  # example questions shown per benchmark
    chance_draws: int = 5  # random-guess replicates averaged for the chance level
    # validity check "layer-60": the fraction of the LLM's decoder parameters removed by
    # Block-Influence layer pruning (no recovery), which must drop the teacher towards chance
    layer_check_ratio: float = 0.6
    # text-only "which option says X?" questions of the binding probe (letter accuracy)
    option_lookup_items: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 < self.layer_check_ratio < 1,
               f"layer_check_ratio must be in (0, 1), got {self.layer_check_ratio}")
        check(1 <= self.n_scenes <= 24, f"n_scenes must be 1..24, got {self.n_scenes}")
        check_at_least(self, examples_per_benchmark=0, chance_draws=1, option_lookup_items=1)


@dataclasses.dataclass(frozen=True)
class _Pruned(StudyParams):
    """What every pruning chapter sets, checked by `prune`'s own rules before any work."""
    methods: tuple[str, ...] = ("layer", "width")  # pruning methods compared
    ratios: tuple[float, ...] = (0.3,)  # fractions of the LLM's decoder parameters removed
    calib_n: int = 10  # calibration samples for pruning (the paper's n = 10)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.methods), "methods must not be empty")
        try:
            tuple(map(prune.parse_method, self.methods))  # "depth+width@0.25" names a share
        except StudyError as exc:
            raise StudyError(f"methods: {exc}") from None
        check(bool(self.ratios), "ratios must not be empty")
        try:
            tuple(map(check_ratio, self.ratios))
        except StudyError as exc:
            raise StudyError(f"ratios: {exc}") from None
        check_distinct("ratios", self.ratios)
        check_at_least(self, calib_n=1)


@dataclasses.dataclass(frozen=True)
class PruningParams(_Pruned):
    """01_pruning_comparison: layerwise vs widthwise pruning without recovery (paper Table 6,
    Fig. 2 'prune only'), each method's importance score against random scores."""
    STUDY: typing.ClassVar[str] = "01_pruning_comparison"
    seeds: tuple[int, ...] = (0,)  # replicate seeds: the calibration sample (studylib.study.grid)
    # "default" = each method's own score (Block Influence / Taylor, the authors' batch form);
    # "random" = the baseline that shows the score matters; "magnitude" (sum of |w|) and
    # "taylor-mean" (per-sample |g * w| averaged) apply to width only.
    importances: tuple[str, ...] = ("default", "random")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_distinct("seeds", self.seeds, at_least=0)
        check_known("importances", self.importances,
               ("default", "random", "magnitude", "taylor", "taylor-mean"), "importance")
        check("default" in self.importances,
               f"importances must include 'default', got {list(self.importances)}")


@dataclasses.dataclass(frozen=True)
class _Recovered(_Pruned):
    """The grid of the recovery chapters (02-04, 06): each pruned model x each recipe."""
    recipes: tuple[str, ...] = ("sft-mm", "sft")  # recovery presets (studylib.compress.recipes)
    seeds: tuple[int, ...] = (0,)  # replicate seeds: calibration sample, data subset, training
    max_steps: int = 4  # cap on recovery steps per run (0 = one full epoch over the subset)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_known("recipes", self.recipes, recipes.PRESETS, "recipe", empty_ok=False)
        check_distinct("seeds", self.seeds, at_least=0)
        check_at_least(self, max_steps=0)


@dataclasses.dataclass(frozen=True)
class SFTRecoveryParams(_Recovered):
    """02_sft_recovery: pruning only vs finetuning the projector (`sft-mm`) vs the projector
    plus LoRA on the LLM (`sft`), for layerwise and widthwise pruning (paper Fig. 2)."""
    STUDY: typing.ClassVar[str] = "02_sft_recovery"
    data_fraction: float = 0.05  # seeded share of the 4,000-image recovery set

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 < self.data_fraction <= 1, f"data_fraction must be in (0, 1], got {self.data_fraction}")

    @property
    def fractions(self) -> tuple[float, ...]:
        """The grid's data fractions: this chapter recovers on one."""
        return (self.data_fraction,)


@dataclasses.dataclass(frozen=True)
class DataEfficiencyParams(_Recovered):
    """04_data_efficiency: recovered AVG-% against the share of recovery data used
    (5/10/20/100%, paper Fig. 4), for a few recipes and pruning settings."""
    STUDY: typing.ClassVar[str] = "04_data_efficiency"
    methods: tuple[str, ...] = ("width",)  # pruning methods
    recipes: tuple[str, ...] = ("sft", "sft+l2")  # recovery presets
    fractions: tuple[float, ...] = (0.025, 0.05)  # data fractions, each a seeded subset

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.fractions) and all(0.0 < f <= 1.0 for f in self.fractions),
               f"fractions must be in (0, 1], got {list(self.fractions)}")
        check_distinct("fractions", self.fractions)


@dataclasses.dataclass(frozen=True)
class KDAblationParams(SFTRecoveryParams):
    """03_kd_ablation: recovery recipes compared on one pruned student per method and seed (paper
    Figs. 3, 5-7, Tables 2 and 5): SFT, logits KD (forward / reverse KL), hidden-state L2,
    their sums, and which hidden layers to match."""
    STUDY: typing.ClassVar[str] = "03_kd_ablation"
    methods: tuple[str, ...] = ("layer",)  # pruning methods (one student each)
    recipes: tuple[str, ...] = ("sft", "rkl", "sft+l2")  # recovery presets compared
    data_fraction: float = 0.02  # seeded share of the recovery set (the same subset for all)
    max_steps: int = 3  # cap on recovery steps per run (0 = one full epoch over the subset)
    tau: float = 2.0  # temperature of the logits-KD recipes (the paper's 2.0)
    cache_check: bool = True  # also time sft+l2 with the teacher online (cache speedup)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_distinct("recipes", self.recipes)
        check(self.tau > 0, f"tau must be > 0, got {self.tau}")


@dataclasses.dataclass(frozen=True)
class BestPracticesParams(StudyParams):
    """05_best_practices: the paper's five findings judged on the results of chapters
    00-04, its Table 3 beside ours, and Fig. 1's spider plots. Trains nothing."""
    STUDY: typing.ClassVar[str] = "05_best_practices"
    READS_RESULTS: typing.ClassVar[bool] = True
    model: str = "all"  # a name for this summary in results and file names (no model is loaded)
    threads: int = 1  # it trains nothing
    studies: tuple[str, ...] = ("00_testbed", "01_pruning_comparison", "02_sft_recovery", "03_kd_ablation",
                                "04_data_efficiency", "06_generalization")  # chapters read
    archs: tuple[str, ...] = ()  # architectures judged; empty = every one in the table
    simulation_families: int = 40  # simulated claim families per setting (the rule's checks)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.studies), "studies must not be empty")
        check_at_least(self, simulation_families=10)

    @property
    def checkpoint_dir(self) -> Path:
        """No model: the chapter reads the results table only (the runner's checkpoint check
        passes on the working directory, and run_id does not depend on a checkpoint)."""
        return Path(self.checkpoint or ".")

    @property
    def checkpoints(self) -> list[Path]:
        return []

    def config(self) -> dict[str, Any]:
        return {**super().config(), "inputs": results_fingerprint(self.results, self.studies)}


@dataclasses.dataclass(frozen=True)
class QuantizationParams(StudyParams):
    """07_quantization: int8 weights on top of pruning and recovery (paper Table 9): the
    teacher and pruned + recovered students, each in fp32 and int8, for memory, latency
    and scores."""
    STUDY: typing.ClassVar[str] = "07_quantization"
    students: tuple[str, ...] = ("width:0.3",)  # method:ratio, pruned + recovered
    recipe: str = "sft+l2"  # recovery recipe of every student (the paper's FT + L2)
    data_fraction: float = 0.02  # seeded share of the 4,000-image recovery set
    max_steps: int = 3  # cap on optimizer steps per recovery (0 = one epoch over the subset)
    calib_n: int = 10  # calibration samples for pruning (the paper's n = 10)
    repeats: int = 3  # latency rounds; every model is timed once per round
    text_tokens: int = 50  # prompt tokens after the image for the latency input
    decode_tokens: int = 8  # decode steps timed per round
    lm_head: bool = False  # quantize the LM head too (bitsandbytes keeps it float)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.students), "students must not be empty")
        for s in self.students:
            method, sep, ratio = s.partition(":")
            check(bool(sep) and method in ("layer", "width"),
                   f"students: expected method:ratio with method layer or width, got {s!r}")
            try:
                value = float(ratio)
            except ValueError:
                value = -1.0
            check(0.0 < value < 1.0, f"students: ratio of {s!r} must be in (0, 1)")
        check_distinct("students", self.students)
        check(self.recipe in recipes.PRESETS or self.recipe.endswith((".yaml", ".yml")),
               f"recipe must be a preset ({', '.join(recipes.PRESETS)}) or a .yaml file, "
               f"got {self.recipe!r}")
        check(0 < self.data_fraction <= 1, f"data_fraction must be in (0, 1], got {self.data_fraction}")
        check_at_least(self, max_steps=0, calib_n=1, repeats=1, text_tokens=1, decode_tokens=1)

    @property
    def student_pairs(self) -> list[tuple[str, float]]:
        """students as (method, ratio) pairs."""
        return [(s.partition(":")[0], float(s.partition(":")[2])) for s in self.students]


@dataclasses.dataclass(frozen=True)
class GeneralizationParams(SFTRecoveryParams):
    """06_generalization: the practices on a third architecture (paper Tables 10-11,
    Mini-InternVL): layerwise vs widthwise pruning of toy-internvl, recovered by the
    projector only (`sft-mm`), projector + LoRA (`sft`) and SFT + L2 distillation (`sft+l2`)."""
    STUDY: typing.ClassVar[str] = "06_generalization"
    model: str = "toy-internvl"  # model name used in results and file names
    # the paper's "SFT mm only", "SFT mm + LLM", "SFT+KD mm + LLM"
    recipes: tuple[str, ...] = ("sft-mm", "sft", "sft+l2")
    data_fraction: float = 0.05  # seeded share of the recovery set


@dataclasses.dataclass(frozen=True)
class ResourcesParams(_Pruned):
    """08_resources: params, FLOPs, memory (paper Tables 1, 7) and latency of pruned models."""
    STUDY: typing.ClassVar[str] = "08_resources"
    model: str = "all"  # a name for the run in results and file names (it measures several)
    archs: tuple[str, ...] = ("toy-llava",)  # teachers, pruned for real: <checkpoint_dir>/<arch>
    real_archs: tuple[str, ...] = ()  # the paper's architectures on the meta device (~30 s a row)
    batch_sizes: tuple[int, ...] = (1, 8)  # prefill batch sizes timed
    text_tokens: int = 50  # prompt tokens after the image (FLOPs, memory and latency)
    repeats: int = 5  # interleaved rounds: each times the teacher and one pruned model once
    min_run_time: float = 0.05  # seconds one timed run lasts at least (sets its calls)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.archs or self.real_archs), "archs and real_archs must not both be empty")
        check_known("real_archs", self.real_archs, ARCHS, "architecture")
        check_distinct("batch_sizes", self.batch_sizes, at_least=1)
        check_at_least(self, text_tokens=1, repeats=1, min_run_time=0.001)

    @property
    def checkpoint_dir(self) -> Path:  # the teachers' folder: a teacher is <it>/<arch>
        return Path(self.checkpoint or "teachers")

    @property
    def checkpoints(self) -> list[Path]:
        return [self.checkpoint_dir / a for a in self.archs]

    def config(self) -> dict[str, Any]:  # a retrained teacher is a new run
        return {**super().config(), "teachers": {
            a: checkpoint_fingerprint(self.checkpoint_dir / a) for a in self.archs}}


STUDIES: dict[str, type[StudyParams]] = {
    cls.STUDY: cls for cls in (TestbedParams, PruningParams, SFTRecoveryParams,
                              DataEfficiencyParams, KDAblationParams, BestPracticesParams,
                              QuantizationParams, GeneralizationParams, ResourcesParams)
}


def register(cls: type[StudyParams]) -> type[StudyParams]:
    """Add a study's params class (later chapters register theirs here)."""
    STUDIES[cls.STUDY] = cls
    return cls
