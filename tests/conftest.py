"""Shared fixtures: tiny models built once per session (random weights, CPU, fp32)."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from studylib.testbed import toy

torch.set_num_threads(int(os.environ.get("STUDYLIB_THREADS", "2")))


@pytest.fixture(scope="session")
def micro_checkpoint(tmp_path_factory):
    """An untrained micro toy-llava saved in llava-hf layout (model + processor)."""
    from studylib import models

    model, processor = toy.build("toy-llava", "micro", seed=0)
    out = tmp_path_factory.mktemp("ckpt") / "micro-llava"
    models.save(model, processor, out)
    return out


def _scratch_book(root: Path) -> Path:
    """A scratch copy of the book's static files under `root` (the real book/ is left alone)."""
    repo = Path(__file__).resolve().parents[1]
    book = root / "book"
    book.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(repo / "book" / name, book / name)
    for md in (repo / "book").glob("*.md"):
        shutil.copy(md, book / md.name)
    shutil.copytree(repo / "book" / "_static", book / "_static")
    return book


@pytest.fixture(scope="session")
def scratch_book():
    """`scratch_book(root)` -> a copy of the book's sources to run studies into."""
    return _scratch_book
