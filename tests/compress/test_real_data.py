"""Real data (`--data FILE.json --image-folder DIR`) on llava-hf checkpoints other than the toys.

Tiny random checkpoints are built from transformers' own classes (CLIP + Llama as in
LLaVA-1.5, SigLIP + Phi as in Bunny) with their real image processors at 32 and 30 px, and
a tiny LLaVA-format dataset is written with PNG and JPEG files of 64x40 px and one
text-only record. Nothing is downloaded. The end-to-end tests run prune (both methods) ->
recover (sft+l2) -> eval through the CLI and check that calibration and training really
saw those files (each takes ~1.3 s here).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from clirun import run
from tiny_llava import IMAGES, PIXELS, STYLES, build_checkpoint, build_dataset

from studylib import models
from studylib.compress import importance, prune
from studylib.testbed import data, realdata


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, Path]:
    return build_dataset(tmp_path_factory.mktemp("realdata"))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("llava-hf")
    return {style: build_checkpoint(style, root / style) for style in STYLES}


class Spy:
    """Records every image the loader opens and every batch the collator makes."""

    def __init__(self, monkeypatch):
        self.opened: list[tuple[str, tuple[int, int]]] = []
        self.batches: list[tuple[list, dict]] = []
        real_loader, real_call = data.folder_loader, data.ConversationCollator.__call__

        def folder_loader(folder):
            load = real_loader(folder)

            def spy(name):
                image = load(name)
                self.opened.append((name, image.size))
                return image
            spy.root = load.root
            return spy

        def call(collator, records):
            batch = real_call(collator, records)
            self.batches.append((list(records), batch))
            return batch

        monkeypatch.setattr(data, "folder_loader", folder_loader)
        monkeypatch.setattr(data.ConversationCollator, "__call__", call)

    def reset(self):
        self.opened.clear()
        self.batches.clear()

    def check_batches(self, size: int) -> set[str]:
        """Every batch holds exactly its image records' pixels at the processor's size;
        returns the image files seen."""
        seen = set()
        for records, batch in self.batches:
            names = [r["image"] for r in records if "image" in r]
            if names:
                assert tuple(batch["pixel_values"].shape) == (len(names), 3, size, size)
            else:
                assert "pixel_values" not in batch
            seen.update(names)
        return seen


# ---------------------------------------------------------------------------------------------
# Reading and collating


def test_records_are_read_checked_and_normalised_as_llava_does(dataset):
    path, folder = dataset
    records = realdata.read_records(path, folder)
    assert [r["id"] for r in records] == ["r0", "r1", 2, "r3", "r4"]
    assert records[2]["conversations"][0]["value"] == "<image>\nwhat colour is the shape?"
    assert "image" not in records[1] and "<image>" not in json.dumps(records[1])
    assert realdata.calibration_sample(records, 3, seed=1) == \
        realdata.calibration_sample(records, 3, seed=1)
    assert json.loads(path.read_text())[2]["conversations"][0]["value"].endswith("<image>")


@pytest.mark.parametrize("style", STYLES)
def test_a_mixed_batch_gives_each_record_its_own_logits(checkpoints, dataset, style):
    """transformers' Llava takes pixel_values for the image records only: the features go
    into the image tokens in order, so a batch mixing text-only and image records gives
    each record the logits it has alone (measured: max difference ~2e-7)."""
    path, folder = dataset
    records = realdata.read_records(path, folder)
    model, processor = models.load(checkpoints[style])
    collate = data.ConversationCollator(processor, image_loader=data.folder_loader(folder))
    batch = collate(records)
    assert tuple(batch["pixel_values"].shape) == (4, 3, PIXELS[style], PIXELS[style])
    with torch.no_grad():
        together = model(**batch).logits
        for i, rec in enumerate(records):
            alone = collate([rec])
            assert ("pixel_values" in alone) == ("image" in rec)
            logits = model(**alone).logits[0]
            torch.testing.assert_close(together[i, : logits.shape[0]], logits,
                                       atol=1e-5, rtol=1e-4)


def test_truncation_never_cuts_an_image_or_an_answer(checkpoints, dataset):
    path, folder = dataset
    _, processor = models.load(checkpoints["clip-llama"])
    record = realdata.read_records(path, folder)[2]  # two turns
    whole = data.ConversationCollator(processor, image_loader=data.folder_loader(folder))
    ids, labels, ends = whole.whole(record)
    collate = data.ConversationCollator(processor, image_loader=data.folder_loader(folder),
                                        max_length=ends[0] + 1)
    cut, cut_labels = collate.encode(record)
    assert cut.count(collate.image_token_id) == collate.n_image_tokens == 16
    assert (cut, cut_labels) == (ids[: ends[0]], labels[: ends[0]])
    assert cut[-1] == processor.tokenizer.eos_token_id


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the record, before any model loads


def _bad(records: list, folder: Path, case: str) -> list:
    records = json.loads(json.dumps(records))
    if case == "missing image":
        records[3]["image"] = "nowhere.png"
    elif case == "corrupt image":
        records[3]["image"] = "corrupt.png"
        good = (folder / "c.png").read_bytes()
        (folder / "corrupt.png").write_bytes(good[: len(good) // 2])  # a cut-off download
    elif case == "not an image":
        records[3]["image"] = "notes.jpg"
        (folder / "notes.jpg").write_text("not a JPEG")
    elif case == "malformed record":
        del records[3]["conversations"]
    else:
        records[3]["caption"] = "a blue square"
    return records


@pytest.mark.parametrize("command", ["prune", "recover"])
@pytest.mark.parametrize("case, needle", [
    ("missing image", "record 3: image file not found"),
    ("corrupt image", "record 3: cannot read image"),
    ("not an image", "record 3: cannot read image"),
    ("malformed record", "record 3: needs 'conversations'"),
    ("unknown key", "record 3: unknown key 'caption'"),
])
def test_bad_records_are_refused_in_one_line_before_loading(
        checkpoints, dataset, tmp_path, capsys, monkeypatch, command, case, needle):
    path, folder = dataset
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_bad(json.loads(path.read_text()), folder, case)))

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the records were checked")
    monkeypatch.setattr(models, "load", no_load)
    monkeypatch.setattr(prune, "rehearse", no_load)
    ckpt = checkpoints["clip-llama"]
    out = tmp_path / "out"
    if command == "prune":
        argv = ["prune", "--model", ckpt, "--method", "layer", "--ratio", "0.25"]
    else:
        argv = ["recover", "--student", ckpt, "--teacher", ckpt, "--recipe", "sft+l2",
                "--cache-dir", tmp_path / "cache"]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, stdout, err = run([*argv, "--data", bad, "--image-folder", folder, "--out", out],
                            capsys)
    assert code == 2 and stdout == ""
    assert err.startswith("studylib: bad.json: ") and err.count("\n") == 1 and "\r" not in err
    assert needle in err, err
    assert "Loading weights" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_data_options_are_checked_before_loading(checkpoints, dataset, tmp_path, capsys):
    path, folder = dataset
    ckpt = checkpoints["clip-llama"]
    base = ["prune", "--model", ckpt, "--method", "layer", "--ratio", "0.25",
            "--out", tmp_path / "out"]
    for extra, needle in [
        (["--data", path], "record 0: names image 'a.png': give --image-folder"),
        (["--image-folder", folder], "--image-folder needs --data"),
        (["--data", path, "--image-folder", folder, "--calib-samples", "9"],
         "--calib-samples 9 is more than the 5 records"),
        (["--data", tmp_path / "none.json", "--image-folder", folder], "no such file"),
        (["--device", "cuda"] if not torch.cuda.is_available() else ["--dtype", "int8"],
         "cuda" if not torch.cuda.is_available() else "invalid choice"),
    ]:
        code, stdout, err = run(base + extra, capsys)
        assert code == 2 and err.startswith("studylib: ") and err.count("\n") == 1, err
        assert needle in err, err
    assert not (tmp_path / "out").exists()


def test_recover_checks_the_teacher_and_the_pair_before_any_weights_load(
        checkpoints, dataset, tmp_path, capsys, monkeypatch):
    """A teacher that is no checkpoint, or one with another vocabulary, is one line before
    the student's weights load (the bad-input run once saw the student's loading bar first)."""
    path, folder = dataset
    other = build_checkpoint("clip-llama", tmp_path / "other", special_tokens=("<extra>",))
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((checkpoints["clip-llama"] / "config.json").read_text())
    cut = tmp_path / "cut"
    shutil.copytree(checkpoints["clip-llama"], cut)
    weights = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    capsys.readouterr()

    def no_load(*args, **kwargs):
        raise AssertionError("weights were loaded before the checks")
    monkeypatch.setattr(models, "load", no_load)
    for teacher, needle in [(tmp_path / "nowhere", "no checkpoint at"),
                            (no_weights, "not a checkpoint (no weights"),
                            (cut, f"cannot load checkpoint {cut}"),
                            (other, "teacher's tokenizer differs from the student's")]:
        code, stdout, err = run(["recover", "--student", checkpoints["clip-llama"],
                                 "--teacher", teacher, "--recipe", "sft+kl", "--data", path,
                                 "--image-folder", folder, "--out", tmp_path / "out"], capsys)
        assert code == 2 and stdout == "" and err.count("\n") == 1, err
        assert needle in err and "Loading weights" not in err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# End to end through the CLI: prune (layer, width) -> recover (sft+l2) -> eval


@pytest.mark.parametrize("style", STYLES)  # ~1.3 s each: not `slow`
def test_prune_recover_eval_on_real_data(checkpoints, dataset, tmp_path, capsys, monkeypatch,
                                         style):
    path, folder = dataset
    spy = Spy(monkeypatch)
    teacher, size = checkpoints[style], PIXELS[style]
    real = ["--data", path, "--image-folder", folder]
    for method, ratio in (("layer", "0.25"), ("width", "0.3")):
        spy.reset()
        pruned = tmp_path / f"{method}-pruned"
        code, out, err = run(["prune", "--model", teacher, "--method", method, "--ratio", ratio,
                              "--calib-samples", "5", "--seed", "1", "--device", "cpu",
                              "--dtype", "float32", *real, "--out", pruned], capsys)
        assert code == 0, err[-2000:]
        report = json.loads((pruned / "pruning_report.json").read_text())
        assert report["calib_samples"] == 5
        assert any(f"of the 5 records of {path}" in note for note in report["notes"])
        # calibration: every image file opened at its own size; Block Influence collates one
        # record at a time, the authors' Taylor score the five records as one padded batch
        assert sorted(spy.opened) == sorted((n, s) for n, (_, s, _) in IMAGES.items())
        assert [len(recs) for recs, _ in spy.batches] == ([1] * 5 if method == "layer" else [5])
        assert spy.check_batches(size) == set(IMAGES)

        spy.reset()
        recovered = tmp_path / f"{method}-recovered"
        code, out, err = run(["recover", "--student", pruned, "--teacher", teacher,
                              "--recipe", "sft+l2", "--max-steps", "2", "--device", "cpu",
                              *real, "--cache-dir", tmp_path / "cache", "--out", recovered],
                             capsys)
        assert code == 0, err[-2000:]
        summary = json.loads((recovered / "recovery_report.json").read_text())
        assert summary["subset"]["n"] == 5 and summary["steps"] == 2
        assert summary["teacher_cache"]["used"]
        assert summary["data"] == str(path) and summary["image_folder"] == str(folder.resolve())
        # the length (the tiny checkpoints' 512 positions), LLaVA's padding and the image
        # folder are in the key
        assert "-len512-pad-img" in summary["teacher_cache"]["dir"]
        # the teacher cache and both training steps collate the five records: 4 images + text
        assert spy.check_batches(size) == set(IMAGES)
        assert any(len(recs) == 5 and "pixel_values" in b for recs, b in spy.batches)
        assert {n for n, _ in spy.opened} == set(IMAGES)

        table = tmp_path / "results.jsonl"
        code, out, err = run(["eval", "--model", recovered, "--out", table, "--limit", "2",
                              "--benchmarks", "GQA,POPE"], capsys)
        assert code == 0, err[-2000:]
        assert "wrote run" in out
    rows = [json.loads(line) for line in table.read_text().splitlines()]
    assert {r["benchmark"] for r in rows} >= {"GQA", "POPE"}


@pytest.mark.parametrize("method", ["layer", "width"])
def test_bfloat16_weights_on_the_cpu(checkpoints, dataset, tmp_path, capsys, method):
    """--dtype bfloat16 loads bf16 weights; the pixels follow the weights' dtype."""
    path, folder = dataset
    out = tmp_path / "pruned"
    code, _, err = run(["prune", "--model", checkpoints["siglip-phi"], "--method", method,
                        "--ratio", "0.25", "--calib-samples", "3", "--device", "cpu",
                        "--dtype", "bfloat16", "--data", path, "--image-folder", folder,
                        "--out", out], capsys)
    assert code == 0, err[-2000:]
    model, _ = models.load(out, dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert json.loads((out / "pruning_report.json").read_text())["ratio_achieved"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_prune_on_cuda(checkpoints, dataset, tmp_path, capsys):
    path, folder = dataset
    out = tmp_path / "pruned"
    code, _, err = run(["prune", "--model", checkpoints["clip-llama"], "--method", "width",
                        "--ratio", "0.3", "--calib-samples", "3", "--device", "cuda",
                        "--dtype", "bfloat16", "--data", path, "--image-folder", folder,
                        "--out", out], capsys)
    assert code == 0, err[-2000:]
    model, _ = models.load(out)
    assert model.config.text_config.intermediate_size < 128


def test_studylib_data_output_is_real_data_for_prune_and_recover(micro_checkpoint, tmp_path,
                                                                  capsys):
    """`studylib data` writes ShapesWorld in the LLaVA layout; read back through --data it
    gives the same calibration as the default path (same records, pixels from PNG files)."""
    folder = tmp_path / "shapes"
    assert run(["data", "--out", folder, "--images", "6", "--turns", "1"], capsys)[0] == 0
    path = folder / "shapesworld_instruct.json"
    records = realdata.read_records(path, folder)
    model, processor = models.load(micro_checkpoint)
    from_files = importance.block_influence(model, records, processor, data.ConversationCollator(
        processor, image_loader=data.folder_loader(folder), config=model.config))
    rendered = importance.block_influence(model, records, processor)
    assert from_files == pytest.approx(rendered, abs=1e-6)
    code, _, err = run(["recover", "--student", micro_checkpoint, "--teacher", micro_checkpoint,
                        "--recipe", "sft-mm", "--max-steps", "1", "--data", path,
                        "--image-folder", folder, "--data-fraction", "0.5",
                        "--out", tmp_path / "rec"], capsys)
    assert code == 0, err[-2000:]
    subset = json.loads((tmp_path / "rec" / "subset.json").read_text())
    assert subset["n_total"] == 6 and subset["n"] == 3
