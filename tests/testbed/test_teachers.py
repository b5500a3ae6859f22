"""The committed default teachers are what `studylib teacher` produces.

`make book` starts from the safetensors under teachers/ instead of retraining them. Two
tiers keep the committed files tied to the code:

- `make test`: retrain each teacher up to CHECKSUM_STEP optimizer steps into its vision
  and align stages (the stages before in full) and compare the weights' sha256 with the one
  the full training recorded at that step in `training_summary.json`; and compare the sha256
  of every LLM stage's training data with the recorded one. Any change to the data, the
  model, the initialisation, the optimizer or the schedule shows.
- `make reproduce-teachers` (`-m reproduce`): the prefixes of the later stages (binding,
  lookup, instruct), then each teacher retrained in full with the recorded seed and thread
  count, every tensor compared bit for bit.

One test class per teacher: pytest-xdist's `--dist loadscope` (`make test`) runs a class on
one worker, so the three teachers spread over the workers.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from studylib.testbed import teachers
from studylib.testbed.teachers import STAGES, train_teacher

TEACHERS = Path(__file__).resolve().parents[2] / "teachers"
# A stage's prefix trains the stages before it in full first. The vision and align prefixes
# (the model, its initialisation, the images, the tokenizer, the optimizer and schedule) run
# in `make test`; the later ones train ~12 min per teacher first and run only with
# `make reproduce-teachers`. What the later stages add, their data, `make test` checks by its
# sha256 (`test_training_data_is_what_the_committed_teacher_saw`).
STAGE_PARAMS = [pytest.param(s, marks=[] if s in ("vision", "align") else
                             [pytest.mark.reproduce]) for s in STAGES]


@pytest.fixture
def threads():
    """Training is deterministic for a given thread count: use the recorded one."""
    before = torch.get_num_threads()
    yield lambda n: torch.set_num_threads(n)
    torch.set_num_threads(before)


class _Teacher:
    arch: str

    def summary(self) -> dict:
        return json.loads((TEACHERS / self.arch / "training_summary.json").read_text())

    @pytest.mark.parametrize("stage", STAGE_PARAMS)
    def test_training_prefix_matches_the_committed_run(self, stage, threads):
        summary = self.summary()
        threads(summary["threads"])
        got = train_teacher(self.arch, None, size=summary["size"], seed=summary["seed"],
                            stop_after=stage)["prefix_checksums"]
        assert got[stage] == summary["prefix_checksums"][stage]

    def test_training_data_is_what_the_committed_teacher_saw(self):
        summary = self.summary()
        recipe = teachers._recipe(summary["size"], {})
        assert recipe == summary["recipe"]
        data = teachers.stage_data(recipe, summary["seed"])
        assert teachers.data_sha256(data) == summary["data_sha256"]

    @pytest.mark.reproduce
    def test_committed_teacher_is_reproduced_by_studylib_teacher(self, tmp_path, threads):
        committed = TEACHERS / self.arch
        summary = self.summary()
        threads(summary["threads"])
        got_summary = train_teacher(self.arch, tmp_path / self.arch, size=summary["size"],
                                    seed=summary["seed"])
        want = load_file(committed / "model.safetensors")
        got = load_file(tmp_path / self.arch / "model.safetensors")
        assert want.keys() == got.keys()
        differ = [k for k in want if not torch.equal(want[k], got[k])]
        assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
        assert ((committed / "config.json").read_text()
                == (tmp_path / self.arch / "config.json").read_text())
        assert got_summary["prefix_checksums"] == summary["prefix_checksums"]


class TestToyLlava(_Teacher):
    arch = "toy-llava"


class TestToyBunny(_Teacher):
    arch = "toy-bunny"


class TestToyInternvl(_Teacher):
    arch = "toy-internvl"
