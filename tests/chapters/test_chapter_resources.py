"""Chapter 08: the interleaved latency harness, the FLOPs-share arithmetic, the rows of a
smoke-sized compute on a micro teacher, the tables beside the paper, and its params."""

import copy
import math

import pandas as pd
import pytest
import torch

from studylib.chapters import exercises, resources, resources_figures
from studylib.compress import prune
from studylib.errors import StudyError
from studylib.study import params_file
from studylib.study.params import ResourcesParams
from studylib.testbed import toy


def test_interleaved_alternates_the_order_every_round():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    got = resources.interleaved(fns, rounds=4, min_run_time=1e-4, threads=1)
    assert got["order"] == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert {k: len(v) for k, v in got["times"].items()} == {"a": 4, "b": 4}
    assert all(n >= 1 for n in got["number"].values())
    assert all(calls.count(n) > 4 * got["number"][n] for n in fns)  # and the warm-ups


def test_latency_rows_of_two_tiny_models():
    teacher, _ = toy.build("toy-llava", "micro", seed=0)
    pruned = copy.deepcopy(teacher)
    prune.shrink(pruned, "width", 0.5)
    P = ResourcesParams(batch_sizes=(1, 2), repeats=3, min_run_time=1e-3)
    run = pd.DataFrame(resources.latency_rows(teacher.eval(), pruned.eval(),
                                              ("micro", "width", 0.5, 0.5), P))
    assert set(run.batch) == {1, 2} and (run.n == 3).all()
    ms = run[run.metric.str.endswith("_ms")].pivot_table(
        index=["batch", "variant"], columns="metric", values="value")
    assert len(ms) == 4 and (ms.prefill_min_ms <= ms.prefill_median_ms).all()
    assert (ms.prefill_min_ms > 0).all()
    paired = run[run.metric == "prefill_paired_ratio"]
    assert len(paired) == 2 and (paired.q1 <= paired.value).all() and (paired.value <= paired.q3).all()


def test_flops_share_arithmetic():
    assert resources.flops_share(0.8, 0.6) == pytest.approx(0.5)  # 20% of a 40% cut
    assert resources.flops_share(0.6, 0.6) == pytest.approx(1.0)  # time follows FLOPs
    assert resources.flops_share(1.0, 0.5) == 0.0  # no time saved
    assert math.isnan(resources.flops_share(0.9, 1.0))  # no FLOPs cut: undefined
    assert resources.flops_share([0.8, 0.5], [0.6, 0.5]).tolist() == pytest.approx([0.5, 1.0])


def _pairs(fixed_ms: float, per_flop_ms: float, batch: int) -> pd.DataFrame:
    """Synthetic pairs that follow t = a + b * F exactly (F in teacher units)."""
    rows = []
    for method, f in (("width", 0.85), ("width", 0.42), ("layer", 0.7)):
        t, p = fixed_ms + per_flop_ms, fixed_ms + per_flop_ms * f
        rows.append({"arch": "toy", "method": method, "ratio": round(1 - f, 2), "batch": batch,
                     "teacher_min": t, "pruned_min": p, "flops_ratio": f, "ratio_min": p / t,
                     "ratio_paired": p / t + 0.01, "share_min": resources.flops_share(p / t, f)})
    return pd.DataFrame(rows)


def test_regimes_read_the_share_as_one_minus_the_fixed_share():
    pairs = pd.concat([_pairs(3.0, 7.0, 1), _pairs(1.0, 99.0, 8), _pairs(9.5, 90.5, 64)])
    reg = resources.regimes(pairs).set_index("batch")
    assert reg.share.tolist() == pytest.approx([0.7, 0.99, 0.905])  # 1 - a / t_teacher
    assert reg.fixed_ms.tolist() == pytest.approx([3.0, 1.0, 9.5])
    assert reg.fixed_pct.tolist() == pytest.approx([30.0, 1.0, 9.5])
    assert reg.regime.tolist() == ["overhead-bound", "compute-bound", "compute-bound"]
    assert (reg.share_paired < reg.share).all()  # the paired ratios are 0.01 slower
    lines = resources.takeaways(_meta_run(), reg.reset_index())
    assert lines[0].startswith("LLaVA-v1.5-7B (meta device, 7.00B parameters): 8.88 TFLOPs "
                               "unpruned against the paper's 9.57")
    assert "A fixed 3.00 ms of the teacher's 10.00 ms (30%)" in lines[1]
    # batch 64 is 0.905 from the minimum times but below 0.9 from the paired ratios
    assert ["Borderline" in line for line in lines[1:4]] == [False, False, True]
    assert lines[-1].endswith("is met in 2 of 2 (teacher, batch) cases.")


def _meta_run() -> pd.DataFrame:
    """Rows of a meta-device run of LLaVA-1.5-7B at ratios 0 and 0.3 (width)."""
    def arch_row(method: str, ratio: float, tflops: float, memory: float) -> dict:
        return {"arch": "llava-1.5-7b", "method": method, "ratio": ratio, "decoder_ratio": ratio,
                "params": 7e9 * (1 - ratio), "llm_params_b": 6.7 * (1 - ratio),
                "tflops": tflops, "memory_mib": memory, "weights_mib": memory - 100}

    return pd.DataFrame([r for a in (arch_row("none", 0.0, 8.88, 13600),
                                     arch_row("width", 0.3, 6.39, 9886))
                         for r in resources._resource_rows(a)])


def test_table1_7_puts_the_paper_cells_beside_ours():
    rows = _meta_run()
    table = resources.table1_7(rows, "llava-1.5-7b")
    assert len(table.columns) <= 7
    assert table["paper TFLOPs"].tolist() == [9.57, 6.89]
    assert table["paper memory (MiB)"].tolist() == [13546, 9548]
    rel = resources.relative_frame(rows).set_index("method")
    assert rel.loc["width", "flops_pct"] == pytest.approx(100 * 6.39 / 8.88)
    assert rel.loc["width", "paper_flops_pct"] == pytest.approx(100 * 6.89 / 9.57)


def test_smoke_compute_rows_and_tables(micro_checkpoint):
    torch.manual_seed(0)
    P = ResourcesParams(checkpoint=str(micro_checkpoint.parent), archs=(micro_checkpoint.name,),
                        methods=("width", "layer"), ratios=(0.5,), batch_sizes=(1, 2), repeats=2,
                        min_run_time=1e-3, calib_n=2, threads=1)
    run = pd.DataFrame(resources.compute(P))
    arch = micro_checkpoint.name
    res = resources.resource_frame(run)
    assert res.method.tolist() == ["none", "width", "layer"]
    assert (res.tflops.iloc[1:] < res.tflops.iloc[0]).all()
    assert (res.memory_mib.iloc[1:] < res.memory_mib.iloc[0]).all()
    pairs = resources.latency_pairs(run)
    assert len(pairs) == 4 and set(pairs.batch) == {1, 2}
    assert (pairs.flops_ratio < 1).all() and pairs.share_min.notna().all()
    assert (pairs.ratio_min == pairs.pruned_min / pairs.teacher_min).all()
    for table in (resources.teacher_table(run, arch), resources.latency_table(pairs, arch),
                  resources.regime_table(resources.regimes(pairs))):
        assert 0 < len(table.columns) <= 7 and len(table)
    # a line per pruned model at the largest ratio and per batch size (none >= 8: no aim)
    assert len(resources.takeaways(run, resources.regimes(pairs))) == 2 + 2
    assert set(run[run.metric == "wall_s"].part) == {"latency"}


@pytest.mark.parametrize("values, needle", [
    ({"real_archs": ["llava-13b"]}, "real_archs: unknown architecture 'llava-13b'; choose from"),
    ({"batch_sizes": [0, 8]}, "batch_sizes must be >= 1, got [0, 8]"),
    ({"batch_sizes": [8, 8]}, "batch_sizes must be distinct"),
    ({"archs": [], "real_archs": []}, "archs and real_archs must not both be empty"),
    ({"ratios": [0.3, 1.2]}, "ratios: ratio must be in (0, 1)"),
    ({"min_run_time": 0}, "min_run_time must be >= 0.001"),
])
def test_bad_params_are_one_line(values, needle):
    with pytest.raises(StudyError) as err:
        params_file.validate("08_resources", values)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_the_run_reads_every_teacher_and_its_fingerprint(tmp_path):
    P = ResourcesParams()
    assert P.checkpoint_dir.as_posix() == "teachers" and P.model == "all"
    other = ResourcesParams(checkpoint=str(tmp_path), archs=("toy-llava", "toy-bunny"))
    assert set(other.config()["teachers"]) == {"toy-llava", "toy-bunny"}
    assert other.run_id() != ResourcesParams(checkpoint=str(tmp_path)).run_id()


@pytest.mark.slow
def test_a_real_architecture_on_the_meta_device():
    P = ResourcesParams(archs=(), real_archs=("llava-1.5-7b",), methods=("width",), ratios=(0.3,))
    run = pd.DataFrame(resources.compute(P))
    table = resources.table1_7(run, "llava-1.5-7b")
    assert table["TFLOPs"].tolist() == pytest.approx([8.88, 6.39], abs=0.01)
    assert table["paper TFLOPs"].tolist() == [9.57, 6.89]
    # The chapter's analysis of a run with no toy teacher (`archs=[]`, exercise 08b): no
    # latency, so no regimes, and the rest still reads.
    pairs = resources.latency_pairs(run)
    reg = resources.regimes(pairs)
    assert pairs.empty and reg.empty and resources.regime_table(reg).empty
    assert any("LLaVA-v1.5-7B" in line for line in resources.takeaways(run, reg))
    resources_figures.fig_resources(resources.relative_frame(run))
    assert "7B" in exercises.glue_answers("08_resources", run)["ex_params7b"]
