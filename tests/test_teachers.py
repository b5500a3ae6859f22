"""The committed default teachers are what `studylib teacher` produces, bit for bit.

`make book` starts from the safetensors under teachers/ instead of retraining (about six
minutes each). This test retrains all three from scratch with the recorded seed and thread count
and compares every tensor, so the committed files cannot drift from the code.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from studylib.train import train_teacher

TEACHERS = Path(__file__).resolve().parent.parent / "teachers"

pytestmark = pytest.mark.slow


@pytest.fixture
def threads():
    """Training is deterministic for a given thread count: use the recorded one."""
    before = torch.get_num_threads()
    yield lambda n: torch.set_num_threads(n)
    torch.set_num_threads(before)


@pytest.mark.parametrize("arch", ["toy-llava", "toy-bunny", "toy-internvl"])
def test_committed_teacher_is_reproduced_by_studylib_teacher(arch, tmp_path, threads):
    committed = TEACHERS / arch
    summary = json.loads((committed / "training_summary.json").read_text())
    threads(summary["threads"])
    train_teacher(arch, tmp_path / arch, size=summary["size"], seed=summary["seed"],
                  evaluate_after=False)
    want = load_file(committed / "model.safetensors")
    got = load_file(tmp_path / arch / "model.safetensors")
    assert want.keys() == got.keys()
    differ = [k for k in want if not torch.equal(want[k], got[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    assert (committed / "config.json").read_text() == (tmp_path / arch / "config.json").read_text()
