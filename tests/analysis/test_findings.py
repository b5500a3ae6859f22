"""studylib.analysis.evidence and .findings: AVG-% from results rows, the CI rule, claims and
verdicts, and graceful "not measured" when chapters are missing."""

import math

import pandas as pd
import pytest

from studylib.analysis import evidence, findings, stats, table3
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
    assert evidence.ci_side(res) == "supported"
    assert res["p"] == pytest.approx(2 * stats.stats.t.sf(10.0 / (half / stats.t975(2)), 2))


@pytest.mark.parametrize("by_arch, label", [
    ({}, "not measured"),
    ({"a": ["supported", "supported", "tie"], "b": ["supported", "tie"]}, "replicated"),
    ({"a": ["supported", "supported", "tie"]}, "inconclusive"),  # one architecture only
    ({"a": ["supported"], "b": ["supported", "contradicted"]}, "not replicated"),
    ({"a": ["contradicted", "tie"], "b": ["tie"]}, "not replicated"),
    ({"a": ["tie", "tie", "supported"], "b": ["supported"]}, "inconclusive"),  # 1 of 3 on a
    ({"a": ["supported", "untested"], "b": ["supported"]}, "replicated"),
    ({"a": ["untested"], "b": ["untested"]}, "inconclusive"),
])
def test_verdict_rule(by_arch, label):
    assert findings.verdict(by_arch) == label


def kd_table(diffs: dict[str, list[float]], sft: float = 80.0) -> pd.DataFrame:
    """Finding 4's SFT+L2 vs SFT at layer 30% on each architecture, one row group per seed:
    AVG-% of SFT is `sft`, SFT+L2's is sft + diffs[arch][seed] (teacher AVG 50, so AVG =
    AVG-% / 2), with a tight evaluation CI (+-0.1 AVG)."""
    rows = []
    for arch, ds in diffs.items():
        rows.append(eval_rows(50.0, study="03_kd_ablation", arch=arch, run_id=arch))
        for seed, d in enumerate(ds):
            for recipe, pct in (("sft", sft), ("sft+l2", sft + d)):
                rows.append(eval_rows(pct / 2, study="03_kd_ablation", arch=arch, run_id=arch,
                                      method="layer", ratio=0.3, recipe=recipe,
                                      data_fraction=0.05, seed=seed, half_ci=0.1))
    return table(*rows)


def finding4(df: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    c = findings.claims(evidence.evaluations(df))
    v = findings.verdicts(c, ["toy-llava", "toy-bunny"])
    return v[v.finding == 4].verdict.iloc[0], c[c.finding == 4]


def test_a_claim_that_holds_in_one_seed_only_is_inconclusive():
    label, c = finding4(kd_table({"toy-llava": [10.0, -1.0, 0.0], "toy-bunny": [10.0, -1.0, 0.0]}))
    assert label == "inconclusive" and set(c.outcome) == {"tie"}


def test_a_claim_that_holds_in_every_seed_on_both_archs_is_replicated():
    label, c = finding4(kd_table({"toy-llava": [8.0, 9.0, 10.0], "toy-bunny": [7.0, 9.0, 8.0]}))
    assert label == "replicated" and set(c.outcome) == {"supported"} and (c.seeds == 3).all()


def test_one_seed_is_not_enough_and_one_architecture_is_not_enough():
    assert finding4(kd_table({"toy-llava": [10.0], "toy-bunny": [10.0]}))[0] == "inconclusive"
    assert finding4(kd_table({"toy-llava": [8.0, 9.0, 10.0]}))[0] == "inconclusive"


def test_dropping_the_seed_term_breaks_the_one_seed_only_test(monkeypatch):
    exact = stats.family
    monkeypatch.setattr(stats, "family",
                        lambda d, se_s, seeds, se_e, **kw: exact(d, 0 * se_s, seeds, se_e, **kw))
    label, _ = finding4(kd_table({"toy-llava": [10.0, -1.0, 0.0], "toy-bunny": [10.0, -1.0, 0.0]}))
    assert label == "replicated"  # what the mutated rule says: the test above would fail


def test_holm_correction_decides_a_borderline_family(monkeypatch):
    diffs = {"toy-llava": [1.6, 3.6, 5.6], "toy-bunny": [1.6, 3.6, 5.6]}
    label, c = finding4(kd_table(diffs))
    assert ((c.p > 0.025) & (c.p < 0.05)).all()  # each significant alone ...
    assert (c.p_holm > 0.05).all() and label == "inconclusive"  # ... not both together
    monkeypatch.setattr(stats, "holm", lambda p: list(p))  # the correction dropped
    assert finding4(kd_table(diffs))[0] == "replicated"


def test_layer_and_width_are_compared_at_the_same_achieved_ratio():
    rows = [eval_rows(50.0)]
    for seed in range(3):
        for method, ratio, achieved, pct in (("layer", 0.3, 0.333, 70.0),
                                             ("width", 0.3, 0.3, 80.0),
                                             ("width", 0.45, 0.45, 50.0)):
            g = eval_rows(pct / 2, method=method, ratio=ratio, seed=seed, half_ci=0.1)
            rows.append([{**r, "ratio_achieved": achieved} for r in g])
    c = findings.claims(evidence.evaluations(table(*rows)))
    one = c[c.finding == 1].iloc[0]
    # width interpolated to 0.333: 80 + (0.033 / 0.15) * (50 - 80) = 73.4
    assert one.a == pytest.approx(80 + (0.033 / 0.15) * -30) and one.b == pytest.approx(70.0)
    assert "interpolated to achieved 0.333" in one.setting
    # beyond the widest width ratio measured: no claim, where the requested ratio would set
    # width at 0.3 against layer at 0.333
    ev = evidence.evaluations(table(*rows[:1], *[g for g in rows[1:] if g[0]["ratio"] != 0.45]))
    assert (findings.claims(ev).finding != 1).all()
    layer = evidence.select(ev, method="layer", ratio=0.3)
    width, note = evidence.matched(ev, "width", layer)
    assert width.empty and note == "not matched: achieved 0.333, beyond width's widest 0.300"


def test_findings_with_missing_chapters_are_not_measured():
    df = table(eval_rows(50.0, run_id="t", study="03_kd_ablation"),
               eval_rows(40.0, run_id="t", study="03_kd_ablation", method="layer", ratio=0.3,
                         recipe="sft", data_fraction=0.1),
               eval_rows(46.0, run_id="t", study="03_kd_ablation", method="layer", ratio=0.3,
                         recipe="sft+l2", data_fraction=0.1, half_ci=0.5))
    ev = evidence.evaluations(df)
    claims = findings.claims(ev)
    v = findings.verdicts(claims, ["toy-llava", "toy-bunny"]).set_index(["finding", "arch"])
    assert v.loc[(4, "toy-llava"), "verdict"] == "inconclusive"  # one seed: untested
    assert v.loc[(4, "toy-llava"), "untested"] == 1
    assert (v.drop(index=[(4, "toy-llava"), (4, "toy-bunny")]).verdict == "not measured").all()
    wide = findings.verdict_table(v.reset_index())
    assert list(wide.columns[-2:]) == ["toy-llava", "toy-bunny"]
    assert findings.verdicts(findings.claims(evidence.evaluations(pd.DataFrame())), []) \
        .verdict.eq("not measured").all()


def test_best_practice_puts_the_paper_row_beside_ours():
    df = table(eval_rows(50.0), eval_rows(45.0, method="layer", ratio=0.3, recipe="sft+l2",
                                          data_fraction=0.1),
               eval_rows(47.0, method="width", ratio=0.3, recipe="sft", data_fraction=0.1))
    paper = paper_table("table3_best_practice")
    bp = table3.best_practice(evidence.evaluations(df), "toy-llava", "LLaVA-v1.5-7B", paper)
    assert list(bp.source) == ["ours: paper's prescription", "ours: best measured", "paper"]
    assert bp["AVG-%"].tolist()[:2] == pytest.approx([90.0, 94.0])
    assert bp.setting.iloc[2] == "layer+FT+L2"


def test_data_claim_needs_a_near_full_data_reference():
    base = [eval_rows(50.0, study="04_data_efficiency")]
    for f, avg in ((0.05, 49.0), (0.1, 49.5), (1.0, 50.0)):
        base.append([r for seed in range(3) for r in eval_rows(
            avg + seed / 10, study="04_data_efficiency", method="width", ratio=0.3,
            recipe="sft", data_fraction=f, half_ci=0.2, seed=seed)])
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


def _recovered(avgs, method, recipe, achieved, ratio=0.3, study="03_kd_ablation"):
    """One recovered condition over three seeds (AVG on the paper's scale per seed)."""
    return [[{**r, "ratio_achieved": achieved}
             for r in eval_rows(avg, study=study, method=method, ratio=ratio, recipe=recipe,
                                data_fraction=0.05, seed=seed, half_ci=0.5)]
            for seed, avg in enumerate(avgs)]


def test_the_two_claims_beyond_the_paper_are_judged_by_the_same_rule():
    rows = [eval_rows(50.0, study="03_kd_ablation")]
    rows += _recovered([45.0, 46.0, 45.5], "depth+width@0.5", "sft", 0.30)
    rows += _recovered([40.0, 40.5, 40.2], "layer", "sft", 0.333)
    rows += _recovered([44.8, 46.1, 45.2], "width", "sft", 0.30)
    rows += _recovered([41.0, 41.5, 41.2], "layer", "sft+srkl", 0.333)
    rows += _recovered([44.0, 44.5, 44.2], "layer", "sft+rkl", 0.333)
    c = findings.claims(evidence.evaluations(pd.DataFrame([r for g in rows for r in g])))
    six = c[c.finding == 6].set_index("claim")
    assert set(six.index) == {"depth+width@0.5 > layer (recovered)",
                              "depth+width@0.5 > width (recovered)"}
    assert six.loc["depth+width@0.5 > layer (recovered)", "d"] == pytest.approx(10.6, abs=0.1)
    assert six.loc["depth+width@0.5 > layer (recovered)", "outcome"] == "supported"
    assert six.loc["depth+width@0.5 > width (recovered)", "outcome"] == "tie"
    assert "achieved: mix 30.0%, layer 33.3%" in six.loc["depth+width@0.5 > layer (recovered)",
                                                          "setting"]
    seven = c[c.finding == 7]
    assert list(seven.claim) == ["SFT+SRKL >= SFT+RKL"] and seven.outcome.iloc[0] == "contradicted"
    # The paper's findings see the paper's methods only: no claim of theirs names the mix.
    assert not c[c.finding <= 5].setting.str.contains("depth").any()
    v = findings.verdicts(c, ["toy-llava"])
    assert list(v.finding) == [1, 2, 3, 4, 5, 6, 7]
    assert findings.verdict_table(v).loc[5, "the paper"].startswith("Beyond the paper")


def test_two_architectures_runs_of_one_key_both_count_though_chance_rows_come_first():
    # Chapter 01 records a random guesser's rows (model "chance") before the model's own;
    # the newest-run rule once took "chance" as both runs' model and kept one architecture.
    chance = [{**r, "model": "chance"} for r in eval_rows(25.0)]
    llava = [{**r, "run_id": "a", "timestamp": "2025-01-01"} for r in
             chance + eval_rows(50.0) + eval_rows(40.0, method="width", ratio=0.3)]
    bunny = [{**r, "run_id": "b", "arch": "toy-bunny", "timestamp": "2025-01-02"} for r in
             chance + eval_rows(60.0, arch="toy-bunny")
             + eval_rows(30.0, method="width", ratio=0.3, arch="toy-bunny")]
    ev = evidence.evaluations(pd.DataFrame(llava + bunny))
    assert set(ev.arch) == {"toy-llava", "toy-bunny"}


@pytest.mark.parametrize("by_arch, limited, label", [
    ({"a": ["contradicted"], "b": ["supported"]}, ["a"], "inconclusive"),  # b alone counts
    ({"a": ["contradicted"], "b": ["supported"]}, [], "not replicated"),
    ({"a": ["contradicted"]}, ["a"], "testbed-limited"),
    ({}, ["a"], "not measured"),
])
def test_a_testbed_limited_architecture_does_not_count(by_arch, limited, label):
    assert findings.verdict(by_arch, limited) == label


def test_the_depth_check_marks_the_layer_width_findings_only():
    """A teacher that keeps 90% with 60% of its layers removed (BI, no recovery) fails the
    depth check; one that keeps 40% passes. Its finding-1 claims are then testbed-limited and
    do not count; its finding-3 claims are untouched."""
    rows = [eval_rows(50.0, arch=a, run_id=a, key=a) for a in ("toy-llava", "toy-bunny")]
    rows += [eval_rows(45.0, arch="toy-llava", run_id="toy-llava", key="toy-llava",
                       method="layer", ratio=0.6),
             eval_rows(20.0, arch="toy-bunny", run_id="toy-bunny", key="toy-bunny",
                       method="layer", ratio=0.6),
             eval_rows(45.0, arch="toy-bunny", run_id="toy-bunny", key="toy-bunny",
                       method="layer-random", ratio=0.6)]
    idle = findings.idle_depth(evidence.evaluations(table(*rows)))
    assert idle == {"toy-llava": pytest.approx(90.0)}
    claims = pd.DataFrame([
        {"finding": f, "arch": a, "claim": "c", "setting": "s", "d": d, "ci_low": d - 1,
         "ci_high": d + 1, "seeds": 3, "outcome": o}
        for f in (1, 3) for a, d, o in (("toy-llava", -5.0, "contradicted"),
                                        ("toy-bunny", 5.0, "supported"))])
    v = findings.verdicts(claims, ["toy-llava", "toy-bunny"], idle=idle).set_index(
        ["finding", "arch"])
    assert v.loc[(1, "toy-llava"), "on_arch"] == "testbed-limited"
    assert "keeps 90%" in v.loc[(1, "toy-llava"), "caveat"]
    assert v.loc[(1, "toy-bunny"), "verdict"] == "inconclusive"  # bunny alone
    assert v.loc[(3, "toy-llava"), "on_arch"] == "opposite"
    assert v.loc[(3, "toy-llava"), "verdict"] == "not replicated"
    assert findings.verdicts(claims, ["toy-llava", "toy-bunny"]).set_index(
        ["finding", "arch"]).loc[(1, "toy-llava"), "verdict"] == "not replicated"
