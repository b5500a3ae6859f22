"""How fast a teacher trains here, in each dtype (`studylib machine --bench`).

The teachers' speed depends on the CPU kind (`studylib.machine`): for these small models bf16
autocast measured 1.3x slower than float32 where the CPU has native bf16 instructions and
7.2-7.5x slower where it has not (DTYPE_COST). `step_times` measures one training step of a
deep toy MLLM (12 x 128, testbeds v1-v3) in each dtype, the dtypes interleaved round by
round so that a busy machine slows them alike; the README's "CPU kinds" table was measured
with it.
"""

from __future__ import annotations

import copy

import torch

from studylib import machine
from studylib.errors import StudyError
from studylib.testbed import instructions, toy
from studylib.testbed.data import ConversationCollator

AUTOCAST = {"float32": None, "bfloat16": torch.bfloat16}

# A training step's time in each dtype relative to float32 on the same machine, per CPU kind
# (`studylib.machine.kind`), medians of `step_times` (toy-llava, 16 four-turn records, 1
# thread, 6-10 interleaved rounds; docs/cpu-kinds.md):
# - AVX512-bf16 (AMD EPYC, family 25 model 17): float32 0.88-0.90 s, bfloat16 1.15-1.19 s;
# - AVX2 (AMD EPYC, issue 24, a busy machine): float32 4.1 s, bfloat16 30.9 s; the AVX-512
#   machine with AVX2 kernels (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2): 0.83 s and
#   6.00 s, 7.2x.
DTYPE_COST: dict[str, dict[str, float]] = {
    "AVX512-bf16": {"float32": 1.0, "bfloat16": 1.32},
    "AVX2": {"float32": 1.0, "bfloat16": 7.5},
}


def _step(model, optimizer, batch, dtype: str):
    """One optimizer step as the teacher's Trainer takes it (autocast only for bf16)."""
    def run():
        with torch.autocast("cpu", dtype=AUTOCAST[dtype], enabled=AUTOCAST[dtype] is not None):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return run


def step_times(arch: str = "toy-llava", dtypes: tuple[str, ...] = ("float32", "bfloat16"),
               records: int = 16, turns: int = 4, rounds: int = 6) -> dict[str, list[float]]:
    """Seconds per training step, per dtype, `rounds` interleaved measurements each (after one
    warm-up step), with the current thread count: a batch of `records` `turns`-turn
    conversations of the instruct mix, AdamW, the deep model (DTYPE_COST's)."""
    from torch.utils.benchmark import Timer

    model, processor = toy.build(arch, "deep", seed=0)
    model.train()
    batch = ConversationCollator(processor, config=model.config)(
        instructions.instruction_set(records, turns=turns))
    steps = {}
    for dtype in dtypes:
        if dtype not in AUTOCAST:
            raise StudyError(f"unknown dtype {dtype!r}; choose from {', '.join(AUTOCAST)}")
        copy_ = copy.deepcopy(model)
        steps[dtype] = _step(copy_, torch.optim.AdamW(copy_.parameters(), lr=5e-4), batch,
                             dtype)
        steps[dtype]()  # warm-up: allocations, kernel selection
    times: dict[str, list[float]] = {d: [] for d in dtypes}
    for _ in range(rounds):
        for dtype in dtypes:
            timer = Timer("step()", globals={"step": steps[dtype]},
                          num_threads=torch.get_num_threads())
            times[dtype].append(timer.timeit(1).median)
    return times


def dtype_cost(kind: str, dtype: str) -> tuple[float, bool]:
    """A step's cost in `dtype` relative to float32 on `kind`, and whether that kind was
    measured (an unmeasured one borrows the measured kind with the same bf16 support)."""
    if kind in DTYPE_COST:
        return DTYPE_COST[kind][dtype], True
    return DTYPE_COST["AVX512-bf16" if kind.endswith("-bf16") else "AVX2"][dtype], False


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def expected_time(summary: dict) -> str:
    """What retraining the teacher of `summary` (its training_summary.json) costs on this
    machine: its recorded wall times scaled by the dtype's cost here against its cost on the
    recording kind. float32 steps took about as long on either kind's kernels of one CPU
    (0.83 s vs 0.88 s), so only the dtype's factor is applied; a slower or busier CPU adds
    its own factor."""
    dtype, recorded = summary["recipe"]["dtype"], summary["machine"]["kind"]
    here = machine.kind()
    cost_here, measured = dtype_cost(here, dtype)
    factor = cost_here / dtype_cost(recorded, dtype)[0]
    stage = summary["stage_wall_time_s"]
    # the binding, lookup and instruct prefixes each retrain the LLM stages before them
    prefixes = 3 * stage["align"] + 2 * stage["binding"] + stage["lookup"]
    return (f"~{_duration(summary['wall_time_s'] * factor)} in full, "
            f"~{_duration((summary['wall_time_s'] + prefixes) * factor)} with "
            f"`make reproduce-teachers`' later prefixes ({dtype} costs {cost_here:.2f}x "
            f"float32 on {here}{'' if measured else ' (not measured: estimated)'}; recorded "
            f"{_duration(summary['wall_time_s'])} on {recorded}, one thread, beside the "
            "other teachers' training: README, \"The teachers\")")
