"""Shared fixtures: tiny models built once per session (random weights, CPU, fp32)."""

import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("STUDYLIB_THREADS", "2")))


@pytest.fixture(scope="session")
def micro_checkpoint(tmp_path_factory):
    """An untrained micro toy-llava saved in llava-hf layout (model + processor)."""
    from studylib import models

    model, processor = models.build("toy-llava", "micro", seed=0)
    out = tmp_path_factory.mktemp("ckpt") / "micro-llava"
    models.save(model, processor, out)
    return out
