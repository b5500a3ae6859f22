"""Beyond the paper, end to end through the CLI: depth+width pruning, then recovery with each
distillation loss that came after it (skew KL, skew reverse KL, GKD's JSD), on every toy
architecture and on a tiny llava-hf checkpoint (CLIP + Llama, as LLaVA-1.5)."""

from __future__ import annotations

import json

import pytest
from clirun import run
from tiny_llava import build_checkpoint

from studylib import models
from studylib.testbed import toy

NAMES = (*sorted(toy.ARCHS), "llava-hf")
NEW_RECIPES = {"sft+skl": "skl", "sft+srkl": "srkl", "sft+jsd": "jsd"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("beyond")
    out = {"llava-hf": build_checkpoint("clip-llama", root / "llava-hf")}
    for arch in sorted(toy.ARCHS):
        model, processor = toy.build(arch, "micro", seed=0)
        models.save(model, processor, root / arch)
        out[arch] = root / arch
    return out


@pytest.mark.parametrize("name", NAMES)
def test_depth_width_pruning_then_each_new_loss(checkpoints, tmp_path, capsys, name):
    teacher = checkpoints[name]
    pruned = tmp_path / "dw30"
    code, _, err = run(["prune", "--model", teacher, "--method", "depth+width",
                        "--depth-share", "0.5", "--ratio", "0.3", "--calib-samples", "2",
                        "--device", "cpu", "--out", pruned], capsys)
    assert code == 0, err[-2000:]
    report = json.loads((pruned / "pruning_report.json").read_text())
    assert report["parts"]["layers_removed"] == 1  # round(0.5 x 0.3 x 4 layers)
    assert abs(report["ratio_achieved"] - 0.3) < 0.02
    for recipe, form in NEW_RECIPES.items():
        out = tmp_path / recipe
        code, stdout, err = run(["recover", "--student", pruned, "--teacher", teacher,
                                 "--recipe", recipe, "--data-fraction", "0.01", "--max-steps",
                                 "1", "--device", "cpu", "--cache-dir", tmp_path / "cache",
                                 "--out", out], capsys)
        assert code == 0, err[-2000:]
        summary = json.loads((out / "recovery_report.json").read_text())
        assert summary["recipe"]["logits"] == form and summary["steps"] == 1
        assert summary["losses"][0]["logits"] > 0 and summary["losses"][0]["sft"] > 0
        model, _ = models.load(out)  # a plain checkpoint, LoRA merged
        assert model.config.text_config.num_hidden_layers == 3
