"""studylib.analysis.evidence and .findings: AVG-% from results rows, the CI rule, claims and
verdicts, and graceful "not measured" when chapters are missing."""

import math

import pandas as pd
import pytest

from studylib.analysis import evidence, findings, stats
from studylib.analysis.paper import paper_table
from studylib.evaluation import metrics


def eval_rows(avg: float, *, study="01_pruning_comparison", run_id="r1", arch="toy-llava",
              method="none", ratio=0.0, recipe="none", data_fraction=None, seed=0,
              half_ci=2.0, key="k", timestamp="2025-01-01T00:00:00"):
    """Six benchmark rows whose paper AVG is `avg` (every benchmark at avg on the 0-100
    scale) with a +-half_ci CI on that scale."""
    out = []
    for b in metrics.PAPER_KEYS:
        s = metrics.PAPER_SCALE[b]
        out.append({"study": study, "run_id": run_id, "arch": arch, "model": arch, "key": key,
                    "timestamp": timestamp, "method": method, "ratio": ratio, "recipe": recipe,
                    "data_fraction": data_fraction, "seed": seed, "limit": 300, "benchmark": b,
                    "metric": "score", "value": avg * s, "ci_low": (avg - half_ci) * s,
                    "ci_high": (avg + half_ci) * s, "n": 300})
    return out


def table(*groups) -> pd.DataFrame:
    return pd.DataFrame([r for g in groups for r in g])


def test_avg_pct_uses_the_teacher_of_the_same_run():
    df = table(eval_rows(50.0), eval_rows(40.0, method="width", ratio=0.3),
               eval_rows(80.0, run_id="r2", key="k2"),
               eval_rows(60.0, run_id="r2", key="k2", method="layer", ratio=0.3))
    ev = evidence.evaluations(df).set_index("method")
    assert ev.loc["width", "AVG_pct"] == pytest.approx(80.0)
    assert ev.loc["layer", "AVG_pct"] == pytest.approx(75.0)
    # se of AVG: six independent benchmarks with se = 2 / 1.96 each -> sqrt(6) * se / 6
    assert ev.loc["width", "se_AVG"] == pytest.approx(math.sqrt(6) * (2 / 1.96) / 6)


def test_only_the_newest_run_of_a_notebook_counts():
    old = table(eval_rows(50.0, run_id="old", timestamp="2025-01-01"),
                eval_rows(10.0, run_id="old", method="width", ratio=0.3, timestamp="2025-01-01"))
    new = table(eval_rows(50.0, run_id="new", timestamp="2025-02-01"),
                eval_rows(45.0, run_id="new", method="width", ratio=0.3, timestamp="2025-02-01"))
    ev = evidence.evaluations(pd.concat([old, new]))
    assert set(ev.run_id) == {"new"}
    assert ev[ev.method == "width"].AVG_pct.iloc[0] == pytest.approx(90.0)


def test_compare_pairs_seeds_and_adds_eval_noise():
    rows = [eval_rows(50.0)]
    for seed, (a, b) in enumerate([(45.0, 40.0), (46.0, 40.0), (44.0, 40.0)]):
        rows.append(eval_rows(a, method="width", ratio=0.3, recipe="sft", seed=seed,
                              half_ci=0.0))
        rows.append(eval_rows(b, method="layer", ratio=0.3, recipe="sft", seed=seed,
                              half_ci=0.0))
    ev = evidence.evaluations(table(*rows))
    res = evidence.compare(ev[ev.method == "width"], ev[ev.method == "layer"])
    diffs = pd.Series([10.0, 12.0, 8.0])  # AVG-% points (teacher 50)
    half = stats.t975(2) * diffs.std(ddof=1) / math.sqrt(3)
    assert res["seeds"] == 3 and res["d"] == pytest.approx(10.0)
    assert res["hi"] - res["d"] == pytest.approx(half)
    assert findings.outcome(res) == "supported" and findings.outcome(res, -1) == "contradicted"


@pytest.mark.parametrize("outcomes, label", [
    ([], "not measured"),
    (["supported", "supported", "tie"], "replicated"),
    (["supported", "contradicted"], "mixed"),
    (["contradicted", "tie"], "not replicated"),
    (["tie", "tie", "supported"], "inconclusive"),
])
def test_verdict_rule(outcomes, label):
    assert findings.verdict(outcomes) == label


def test_findings_with_missing_chapters_are_not_measured():
    df = table(eval_rows(50.0, run_id="t", study="03_kd_ablation"),
               eval_rows(40.0, run_id="t", study="03_kd_ablation", method="layer", ratio=0.3,
                         recipe="sft", data_fraction=0.1),
               eval_rows(46.0, run_id="t", study="03_kd_ablation", method="layer", ratio=0.3,
                         recipe="sft+l2", data_fraction=0.1, half_ci=0.5))
    ev = evidence.evaluations(df)
    claims = findings.claims(ev)
    v = findings.verdicts(claims, ["toy-llava", "toy-bunny"]).set_index(["finding", "arch"])
    assert v.loc[(4, "toy-llava"), "verdict"] == "replicated"  # 92 vs 80 %, CI +-~3
    assert (v.drop(index=(4, "toy-llava")).verdict == "not measured").all()
    wide = findings.verdict_table(v.reset_index())
    assert list(wide.columns[-2:]) == ["toy-llava", "toy-bunny"]
    assert findings.verdicts(findings.claims(evidence.evaluations(pd.DataFrame())), []) \
        .verdict.eq("not measured").all()


def test_best_practice_puts_the_paper_row_beside_ours():
    df = table(eval_rows(50.0), eval_rows(45.0, method="layer", ratio=0.3, recipe="sft+l2",
                                          data_fraction=0.1),
               eval_rows(47.0, method="width", ratio=0.3, recipe="sft", data_fraction=0.1))
    paper = paper_table("table3_best_practice")
    bp = findings.best_practice(evidence.evaluations(df), "toy-llava", "LLaVA-v1.5-7B", paper)
    assert list(bp.source) == ["ours: paper's prescription", "ours: best measured", "paper"]
    assert bp["AVG-%"].tolist()[:2] == pytest.approx([90.0, 94.0])
    assert bp.setting.iloc[2] == "layer+FT+L2"


def test_data_claim_needs_a_near_full_data_reference():
    base = [eval_rows(50.0, study="04_data_efficiency")]
    for f, avg in ((0.05, 49.0), (0.1, 49.5), (1.0, 50.0)):
        base.append(eval_rows(avg, study="04_data_efficiency", method="width", ratio=0.3,
                              recipe="sft", data_fraction=f, half_ci=0.2))
    c = findings.claims(evidence.evaluations(table(*base)))
    five = c[c.finding == 5]
    assert list(five.claim) == ["5% data >= 95% of 100%"] and five.outcome.iloc[0] == "supported"
    c = findings.claims(evidence.evaluations(table(*base[:3])))  # 5% and 10% only
    assert c[c.finding == 5].empty


def test_the_notebooks_names_stay_importable_from_findings():
    # notebooks/03 and 05 call findings.evaluations / coverage / headline
    assert findings.evaluations is evidence.evaluations
    assert findings.coverage is evidence.coverage and findings.headline is evidence.headline
    assert stats.RULE in findings.RULE
