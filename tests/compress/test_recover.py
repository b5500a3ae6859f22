"""Recovery training: recipes, data subsets, trainable parts, teacher cache, CLI, DDP."""

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from studylib import models
from studylib.compress import recipes, recover, students, subsets
from studylib.errors import StudyError
from studylib.testbed import instructions, plan, shapes, toy

ROOT = Path(__file__).resolve().parents[2]


def drop_layers(model, drop):
    """A cheap layer-pruned student (what prune.py's layerwise pruning produces)."""
    layers = models.text_layers(model)
    keep = [i for i in range(len(layers)) if i not in drop]
    new = nn.ModuleList([layers[i] for i in keep])
    for j, layer in enumerate(new):
        layer.self_attn.layer_idx = j
    model.model.language_model.layers = new
    config = model.config.text_config
    config.num_hidden_layers = len(keep)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in keep]
    return model


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Saved micro teacher (4 layers) and its 3-layer student; returns their directories."""
    root = tmp_path_factory.mktemp("recover")
    teacher, processor = toy.build("toy-llava", "micro", seed=0)
    models.save(teacher, processor, root / "teacher")
    models.save(drop_layers(copy.deepcopy(teacher), [1]), processor, root / "student")
    return root / "student", root / "teacher"


@pytest.fixture(scope="module")
def records():
    return instructions.instruction_set(48, turns=2, seed=0)


# --- recipes ---------------------------------------------------------------------------------


def test_presets_cover_the_paper_and_encode_their_weights():
    expected = {"sft-mm", "sft", "kl", "rkl", "l2", "kl+l2", "rkl+l2", "sft+kl", "sft+rkl",
                "sft+l2", "sft+kl+l2", "sft+rkl+l2", "sft+l2@last2", "sft+l2@last3",
                "sft+skl", "sft+srkl", "sft+jsd"}
    assert set(recipes.PRESETS) == expected
    assert (recipes.get("sft+srkl").logits, recipes.get("sft+srkl").skew) == ("srkl", 0.1)
    assert (recipes.get("sft+jsd").logits, recipes.get("sft+jsd").jsd_beta) == ("jsd", 0.5)
    r = recipes.get("sft+rkl+l2")
    assert (r.alpha, r.beta, r.gamma, r.logits, r.tau, r.train) == (1, 1, 1, "rkl", 2.0, "mm+lora")
    assert recipes.get("sft-mm").train == "mm" and recipes.get("sft-mm").beta == 0
    assert recipes.get("kl").alpha == 0 and recipes.get("l2").gamma == 1
    assert recipes.get("sft+l2@last3").match_layers == (-3, -2, -1)


def test_recipe_validation_and_yaml(tmp_path):
    with pytest.raises(StudyError, match="all zero"):
        recipes.RecoveryRecipe(alpha=0, beta=0, gamma=0)
    with pytest.raises(StudyError, match=r"unknown recipe 'sft\+foo'"):
        recipes.get("sft+foo")
    with pytest.raises(StudyError, match="match_layers"):
        recipes.RecoveryRecipe(gamma=1, match_layers=(0,))
    with pytest.raises(StudyError, match="logits must be one of kl, rkl, skl, srkl, jsd"):
        recipes.RecoveryRecipe(beta=1, logits="js")
    with pytest.raises(StudyError, match=r"skew must be in \[0, 1\)"):
        recipes.RecoveryRecipe(beta=1, logits="skl", skew=1.0)
    with pytest.raises(StudyError, match=r"jsd_beta must be in \(0, 1\)"):
        recipes.RecoveryRecipe(beta=1, logits="jsd", jsd_beta=0.0)
    knobs = tmp_path / "skew.yaml"  # the knob written out in the recipe file
    knobs.write_text("base: sft+srkl\nskew: 0.3\n")
    assert (recipes.get(knobs).logits, recipes.get(knobs).skew) == ("srkl", 0.3)
    assert recipes.get(knobs).to_dict()["skew"] == 0.3
    good = tmp_path / "mine.yaml"
    good.write_text("base: sft+l2\nmatch_layers: [-2, -1]\nlr: 5e-4\n")  # YAML 1.1: a str
    r = recipes.get(good)
    assert (r.name, r.alpha, r.gamma, r.match_layers, r.lr) == ("mine", 1, 1, (-2, -1), 5e-4)
    bad = tmp_path / "bad.yaml"
    bad.write_text("alpha: 1\ngama: 1\n")
    with pytest.raises(StudyError, match="unknown key 'gama'"):
        recipes.get(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("lr: fast\n")
    with pytest.raises(StudyError, match="lr must be a number"):
        recipes.get(typo)
    zero = tmp_path / "zero.yaml"
    zero.write_text("alpha: 0\n")
    with pytest.raises(StudyError, match="all zero"):
        recipes.get(zero)


# --- data fractions --------------------------------------------------------------------------


def test_subsets_are_seeded_nested_and_hashed(tmp_path, records):
    a = subsets.select_subset(records, 0.25, seed=0)
    assert len(a.indices) == 12 and a == subsets.select_subset(records, 0.25, seed=0)
    assert a.indices != subsets.select_subset(records, 0.25, seed=1).indices
    assert set(a.indices) < set(subsets.select_subset(records, 0.5, seed=0).indices)
    f = tmp_path / "subset.json"
    f.write_text(json.dumps(a.to_dict()))
    assert subsets.load_subset(f, records) == a
    changed = copy.deepcopy(records)
    changed[a.indices[0]]["conversations"][1]["value"] = "something else"
    with pytest.raises(StudyError, match="hash differs"):
        subsets.load_subset(f, changed)
    for bad in (0, 1.5, -0.1, float("nan"), "x"):
        with pytest.raises(StudyError, match="data fraction"):
            subsets.select_subset(records, bad)
    assert len(subsets.training_records(n_images=10)) == 10
    assert subsets.DEFAULT_DATA == {"n_images": 4000, "turns": 3, "seed": 0}


def test_the_recovery_set_is_the_teachers_closing_mix():
    """No descriptions, the benchmarks' occluded world, open and spatial questions: what
    the committed teachers finished on (`plan.PLANS`' closing mix), not the recipe's set."""
    records = subsets.training_records(n_images=400, seed=3)
    assert len(records) == 400 and records == subsets.training_records(n_images=400, seed=3)
    questions = [t["value"] for r in records for t in r["conversations"][0::2]]
    assert len(questions) == 400 * subsets.DEFAULT_DATA["turns"]
    assert not any(instructions.DESCRIBE in q for q in questions)
    assert all(r["image"].startswith(f"shapesworld/occluded-{round(100 * shapes.OCCLUSION)}/")
               for r in records)
    closing = plan.parse(plan.PLANS["toy-llava"])[-2]  # the closing mix, before FINISH
    assert (closing["kind"], closing["open"], closing["spatial"], closing["decoys"]) == \
        ("mix", 0.1, 0.4, 1)
    (stage,) = plan.parse(subsets.RECOVERY_MIX.format(n=400, turns=3))
    assert {k: stage[k] for k in ("open", "spatial", "decoys", "occlusion", "caption")} == \
        {k: closing[k] for k in ("open", "spatial", "decoys", "occlusion", "caption")}


# --- what trains -----------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["toy-llava", "toy-bunny", "toy-internvl"])
def test_lora_targets_only_the_language_model_and_projector_trains_fully(arch):
    # InternViT's attention also has q/k/v_proj and its MLP fc1/fc2: the regex must skip them
    model, _ = toy.build(arch, "micro", seed=0)
    peft_model = students.prepare_student(model, recipes.get("sft"))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    lora = [n for n in trainable if "lora_" in n]
    assert lora and all("language_model" in n for n in lora)
    wanted = {"toy-bunny": ("dense", "fc1"),
              "toy-internvl": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")  # Phi-3: fused
              }.get(arch, ("o_proj", "gate_proj", "down_proj"))
    assert all(any(f".{w}." in n for n in lora) for w in wanted)
    assert not any("vision_tower" in n for n in trainable)
    assert any("multi_modal_projector" in n and "lora_" not in n for n in trainable)
    assert not any("embed_tokens" in n or "lm_head" in n for n in trainable)


def test_mm_trains_only_the_projector():
    model, _ = toy.build("toy-llava", "micro", seed=0)
    model = students.prepare_student(model, recipes.get("sft-mm"))
    trainable = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"multi_modal_projector"}


# --- end to end ------------------------------------------------------------------------------


def test_recover_writes_a_plain_loadable_merged_checkpoint(pair, records, tmp_path):
    from transformers import AutoModelForImageTextToText

    student_dir, teacher_dir = pair
    before, _ = models.load(student_dir)
    out = tmp_path / "out"
    report = recover.recover(student_dir, teacher_dir, "sft+l2", records=records,
                             data_fraction=0.5, out=out, cache_dir=tmp_path / "cache",
                             max_steps=3, progress=False)
    s = report.summary
    assert s["steps"] == 3 and len(s["losses"]) == 3 and s["subset"]["n"] == 24
    assert all({"sft", "match", "loss"} <= set(row) for row in s["losses"])
    assert s["teacher_cache"]["built"] == ["hidden_L-1.safetensors"] and not s["teacher_online"]
    saved = json.loads((out / "recovery_report.json").read_text())
    assert saved["subset_hash"] == s["subset_hash"] == json.loads(
        (out / "subset.json").read_text())["hash"]
    assert saved["recipe"]["name"] == "sft+l2" and saved["wall_time_s"] > 0
    # LoRA merged: the saved model is a plain Llava checkpoint that reproduces the trained one.
    reloaded = AutoModelForImageTextToText.from_pretrained(out).eval()
    assert not any("lora" in k for k in reloaded.state_dict())
    batch = recover.ConversationCollator(report.processor)(records[:2])
    batch.pop("labels")
    with torch.no_grad():
        diff = (reloaded(**batch).logits - report.model(**batch).logits).abs().max()
    assert diff < 1e-5
    after = reloaded.state_dict()
    old = before.state_dict()
    changed = {k for k in old if not torch.equal(old[k], after[k])}
    assert not any("vision_tower" in k for k in changed)  # frozen
    assert any("multi_modal_projector" in k for k in changed)
    assert any("language_model.layers.2.mlp.down_proj" in k for k in changed)  # LoRA merged
    assert not any("embed_tokens" in k or "lm_head" in k for k in changed)
    # The saved subset is reused on request: same records, same cache entry (a hit).
    again = recover.recover(student_dir, teacher_dir, "sft+l2", records=records,
                            subset_file=out / "subset.json", cache_dir=tmp_path / "cache",
                            max_steps=1, progress=False)
    assert again["subset_hash"] == s["subset_hash"] and again["teacher_cache"]["hit"]
    assert again["data_fraction"] == 0.5


def test_cached_teacher_gives_the_online_losses(pair, records, tmp_path):
    """Step 1 (same weights, same batch) must see the same L2 / KD values either way."""
    student_dir, teacher_dir = pair
    kw = dict(records=records, data_fraction=0.25, max_steps=1, progress=False,
              cache_dir=tmp_path / "cache")
    cached = recover.recover(student_dir, teacher_dir, "sft+l2", **kw)
    online = recover.recover(student_dir, teacher_dir, "sft+l2", use_cache=False, **kw)
    assert online["teacher_online"] and not cached["teacher_online"]
    assert cached["losses"][0]["match"] > 0
    assert cached["losses"][0]["match"] == pytest.approx(online["losses"][0]["match"], rel=1e-4)
    assert cached["losses"][0]["sft"] == pytest.approx(online["losses"][0]["sft"], rel=1e-5)
    exact = recover.recover(student_dir, teacher_dir, "sft+rkl", **kw)
    vocab = models.load(teacher_dir)[0].config.text_config.vocab_size
    topk = recipes.RecoveryRecipe(name="rkl-top", alpha=1, beta=1, logits="rkl", topk=vocab)
    approx = recover.recover(student_dir, teacher_dir, topk, **kw)
    assert approx["teacher_cache"]["built"] == [f"topk{vocab}.safetensors"]
    assert exact["losses"][0]["logits"] > 0
    assert approx["losses"][0]["logits"] == pytest.approx(exact["losses"][0]["logits"], rel=1e-4)
    # Exact KD runs the teacher anyway: its hidden states come with it, no cache is built.
    both = recover.recover(student_dir, teacher_dir, "sft+rkl+l2", **kw)
    assert both["teacher_online"] and not both["teacher_cache"]["used"]
    assert both["losses"][0]["match"] == pytest.approx(cached["losses"][0]["match"], rel=1e-4)
    assert both["losses"][0]["logits"] == pytest.approx(exact["losses"][0]["logits"], rel=1e-5)


@pytest.mark.parametrize("preset", ["sft+skl", "sft+srkl", "sft+jsd"])
def test_new_losses_train_online_and_from_the_cached_teacher(pair, records, tmp_path, preset):
    """Step 1 sees the same logits loss with the teacher online and from a top-k cache that
    covers the vocabulary."""
    student_dir, teacher_dir = pair
    kw = dict(records=records, data_fraction=0.25, max_steps=1, progress=False,
              cache_dir=tmp_path / "cache")
    exact = recover.recover(student_dir, teacher_dir, preset, **kw)
    vocab = models.load(teacher_dir)[0].config.text_config.vocab_size
    cached = recipes.from_dict({"base": preset, "topk": vocab}, name=f"{preset}-top")
    approx = recover.recover(student_dir, teacher_dir, cached, **kw)
    assert exact["teacher_online"] and not approx["teacher_online"]
    assert exact["losses"][0]["logits"] > 0
    assert approx["losses"][0]["logits"] == pytest.approx(exact["losses"][0]["logits"], rel=1e-4)


# --- CLI -------------------------------------------------------------------------------------


def _cli(capsys, *args):
    """`studylib ...` in-process (a subprocess per case would cost ~5 s of imports each)."""
    from studylib import cli

    threads = torch.get_num_threads()
    try:
        code = cli.main(["--threads", str(threads), *args])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.err


def test_cli_rejects_bad_input_with_one_line_and_writes_nothing(pair, tmp_path, capsys):
    student_dir, teacher_dir = pair
    odd_processor = toy.build_processor("toy-llava")
    odd_processor.tokenizer.add_tokens(["zebra-stripes"])
    other = tmp_path / "other-teacher"
    models.save(models.load(teacher_dir)[0], odd_processor, other)
    zero = tmp_path / "zero.yaml"
    zero.write_text("alpha: 0.0\nbeta: 0\n")
    base = ["recover", "--student", str(student_dir)]
    cases = {
        "unknown recipe": [*base, "--teacher", str(teacher_dir), "--recipe", "sft+kd"],
        "all zero": [*base, "--teacher", str(teacher_dir), "--recipe", str(zero)],
        "(0, 1]": [*base, "--teacher", str(teacher_dir), "--recipe", "sft",
                   "--data-fraction", "1.5"],
        "tokenizer differs": [*base, "--teacher", str(other), "--recipe", "sft+kl"],
    }
    for i, (needle, argv) in enumerate(cases.items()):
        out = tmp_path / f"out{i}"
        code, err = _cli(capsys, *argv, "--out", str(out))
        assert code == 2, (needle, err[-500:])
        lines = [ln for ln in err.splitlines() if ln.startswith("studylib:")]
        assert len(lines) == 1 and needle in lines[0], err[-500:]
        assert not out.exists()


def test_cli_recovers_on_the_default_set(pair, tmp_path, capsys):
    student_dir, teacher_dir = pair
    out = tmp_path / "run"
    code, err = _cli(capsys, "recover", "--student", str(student_dir), "--teacher", str(teacher_dir),
                  "--recipe", "sft-mm", "--data-fraction", "0.004", "--max-steps", "2",
                  "--out", str(out))
    assert code == 0, err[-1000:]
    report = json.loads((out / "recovery_report.json").read_text())
    assert report["subset"]["n"] == 16 and report["subset"]["n_total"] == 4000
    assert report["steps"] == 2 and report["recipe"]["train"] == "mm"
    assert len(json.loads((out / "subset.json").read_text())["indices"]) == 16
    model, _ = models.load(out)
    assert len(models.text_layers(model)) == 3


# --- DDP -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_through_the_trainer(pair, tmp_path):
    """torchrun, 2 CPU ranks (gloo): identical final weights, disjoint shards of one subset."""
    student_dir, teacher_dir = pair
    res = tmp_path / "res"
    res.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(ROOT / "tests" / "ddp_worker.py"), str(student_dir), str(teacher_dir),
           str(tmp_path / "out"), str(tmp_path / "cache"), str(res)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=150)
    assert result.returncode == 0, result.stderr[-2000:]
    r0, r1 = (json.loads((res / f"rank{i}.json").read_text()) for i in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2 and r0["steps"] == r1["steps"] == 3
    assert r0["weights"] == r1["weights"]
    expected = subsets.select_subset(instructions.instruction_set(64, turns=1, seed=0), 0.5)
    assert r0["subset_hash"] == r1["subset_hash"] == expected.hash
    assert not set(r0["seen"]) & set(r1["seen"])  # each rank its own shard
    assert set(r0["seen"]) | set(r1["seen"]) <= set(range(len(expected.indices)))
    assert len(r0["seen"]) == len(r1["seen"]) == 12  # 3 steps x batch 4
    assert [r0["cache"]["hit"], r1["cache"]["hit"]] == [False, True]  # rank 0 built it first
    saved = json.loads((tmp_path / "out" / "recovery_report.json").read_text())
    assert saved["world_size"] == 2


@pytest.mark.parametrize("recipe", ["sft+l2", "sft+rkl"])  # cached teacher, online teacher
def test_recover_leaves_the_teacher_where_it_found_it(pair, records, tmp_path, monkeypatch,
                                                      recipe):
    """Recovery moves the teacher (cache building, CPU while only its cache is read, the
    logits' device online); the caller's model must end on the device it came on."""
    student_dir, teacher_dir = pair
    teacher, processor = models.load(teacher_dir)
    moves = []
    move = teacher.to
    monkeypatch.setattr(teacher, "to", lambda *a, **kw: moves.append(a) or move(*a, **kw))
    before = next(teacher.parameters()).device
    recover.recover(student_dir, (teacher, processor), recipe, records=records,
                    data_fraction=0.25, max_steps=1, progress=False,
                    cache_dir=tmp_path / "cache")
    assert moves and moves[-1] == (before,)  # the last move puts it back
    assert next(teacher.parameters()).device == before


def test_teacher_goes_back_even_when_training_fails(monkeypatch):
    model = nn.Linear(2, 2)
    moves = []
    monkeypatch.setattr(model, "to", lambda *a, **kw: moves.append(a))
    with pytest.raises(RuntimeError), recover.teacher_stays_put(model):
        model.to("elsewhere")
        raise RuntimeError("training failed")
    assert moves == [("elsewhere",), (torch.device("cpu"),)]
