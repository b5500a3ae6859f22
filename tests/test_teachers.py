"""The committed default teachers are what `studylib teacher` produces.

`make book` starts from the safetensors under teachers/ instead of retraining them. Two
tiers keep the committed files tied to the code:

- `make test` (this file, unmarked tests): retrain each teacher up to CHECKSUM_STEP
  optimizer steps into each stage (vision, align, instruct; the stages before it in full)
  and compare the weights' sha256 with the one the full training recorded at that step in
  `training_summary.json`. Any change to the data, the model, the initialisation, the
  optimizer or the schedule shows.
- `make reproduce-teachers` (`-m reproduce`): retrain each teacher in full with the recorded
  seed and thread count and compare every tensor, bit for bit.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from studylib.train import STAGES, train_teacher

TEACHERS = Path(__file__).resolve().parent.parent / "teachers"
ARCHS = ["toy-llava", "toy-bunny", "toy-internvl"]
# One pytest-xdist group per teacher: its three prefixes run on one worker, the teachers
# spread over the workers.
BY_ARCH = [pytest.param(a, marks=pytest.mark.xdist_group(a)) for a in ARCHS]
# The instruct prefix trains the vision and align stages in full first (~70 s): slow.
STAGE_PARAMS = [pytest.param(s, marks=[pytest.mark.slow] if s == "instruct" else [])
                for s in STAGES]


@pytest.fixture
def threads():
    """Training is deterministic for a given thread count: use the recorded one."""
    before = torch.get_num_threads()
    yield lambda n: torch.set_num_threads(n)
    torch.set_num_threads(before)


def _summary(arch: str) -> dict:
    return json.loads((TEACHERS / arch / "training_summary.json").read_text())


@pytest.mark.parametrize("stage", STAGE_PARAMS)
@pytest.mark.parametrize("arch", BY_ARCH)
def test_teacher_training_prefix_matches_the_committed_run(arch, stage, threads):
    summary = _summary(arch)
    threads(summary["threads"])
    got = train_teacher(arch, None, size=summary["size"], seed=summary["seed"],
                        evaluate_after=False, stop_after=stage)["prefix_checksums"]
    assert got[stage] == summary["prefix_checksums"][stage]


@pytest.mark.reproduce
@pytest.mark.parametrize("arch", BY_ARCH)
def test_committed_teacher_is_reproduced_by_studylib_teacher(arch, tmp_path, threads):
    committed = TEACHERS / arch
    summary = _summary(arch)
    threads(summary["threads"])
    got_summary = train_teacher(arch, tmp_path / arch, size=summary["size"],
                                seed=summary["seed"], evaluate_after=False)
    want = load_file(committed / "model.safetensors")
    got = load_file(tmp_path / arch / "model.safetensors")
    assert want.keys() == got.keys()
    differ = [k for k in want if not torch.equal(want[k], got[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    assert (committed / "config.json").read_text() == (tmp_path / arch / "config.json").read_text()
    assert got_summary["prefix_checksums"] == summary["prefix_checksums"]
