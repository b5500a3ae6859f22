"""The smoke profile end to end: every chapter (00-05) runs through papermill on the committed
teachers and writes rows, the book builds with -W from those runs, and a chapter renders in
headless Chromium with its figure and no error text."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from studylib.results import ResultsTable

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1200,1600"]

pytestmark = pytest.mark.slow
STUDIES = ("00_testbed", "01_pruning_comparison", "02_sft_recovery", "03_kd_ablation",
           "04_data_efficiency", "05_best_practices", "06_generalization",
           "07_quantization")


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory, scratch_book):
    root = tmp_path_factory.mktemp("smoke")
    book = scratch_book(root)
    table = root / "results.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "studylib.cli", "study", "--workers", "2",
         "--profile", "smoke", "--book", os.path.relpath(book, REPO),  # relative, as make runs it
         "--results", str(table)],
        capture_output=True, text=True, cwd=REPO, timeout=1200)
    return book, table, proc


def test_smoke_study_runs_and_builds(smoke_book):
    book, table, proc = smoke_book
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for study in STUDIES:
        executed = list((book / "runs" / study).glob("*__smoke.ipynb"))
        assert len(executed) == 1, study
        assert (book / "_build" / "html" / "runs" / study / executed[0].with_suffix(".html")
                .name).is_file(), study
    assert (book / "runs" / "00_testbed" / "toy-llava__smoke.ipynb").is_file()
    assert (book / "figures" / "00_testbed__toy-llava__smoke.png").stat().st_size > 5000
    html = book / "_build" / "html"
    assert (html / "runs" / "00_testbed" / "toy-llava__smoke.html").is_file()
    assert (html / "provenance.html").is_file() and (html / "rerun.html").is_file()


def test_smoke_run_writes_tidy_rows(smoke_book):
    _, table, _ = smoke_book
    everything = ResultsTable(table).frame()
    assert set(STUDIES) <= set(everything.study)  # every chapter recorded its rows
    rows = everything[everything.study == "00_testbed"]
    assert rows.run_id.nunique() == 1
    for col in ("study", "model", "arch", "method", "ratio", "recipe", "data_fraction", "seed",
                "benchmark", "metric", "value", "n", "git_sha", "timestamp", "run_id",
                "wall_s", "torch"):
        assert col in rows, col
    ours = rows[rows.model == "toy-llava"]
    assert set(ours.benchmark) == {"GQA", "SQA", "POPE", "MME-P", "MME-C", "MMMU", "AVG"}
    assert (ours.study == "00_testbed").all() and (ours.arch == "toy-llava").all()
    assert ours[ours.benchmark != "AVG"].n.between(1, 40).all()  # smoke-sized subsets
    chance = rows[(rows.model == "chance") & (rows.metric == "score")].set_index("benchmark")
    assert chance.value.gt(0).all()  # a random guesser scores above zero everywhere
    assert chance.value[["GQA", "SQA", "POPE", "MMMU"]].lt(100).all()


def test_provenance_page_is_computed_from_the_results_table(smoke_book):
    book, table, _ = smoke_book
    frame = ResultsTable(table).frame()
    rid = frame[frame.study == "00_testbed"].run_id.iloc[0]
    page = (book / "_build" / "html" / "provenance.html").read_text()
    assert rid in page and "toy-llava__smoke" in page and "wall (s)" in page


@pytest.mark.skipif(CHROMIUM is None, reason="needs the Debian package `chromium`")
def test_chapter_renders_in_headless_chromium(smoke_book, tmp_path):
    book, _, proc = smoke_book
    assert proc.returncode == 0
    page = (book / "_build" / "html" / "runs" / "00_testbed" / "toy-llava__smoke.html").as_uri()
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                              "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    images = re.findall(r'<img[^>]*src="([^"]+\.png)"', html)
    assert len(images) >= 2  # the scenes strip and the scores figure
    for src in images:
        assert (Path(page.removeprefix("file://")).parent / src).resolve().is_file()
    assert "beside the paper" in html  # the figure's caption (myst-nb figure metadata)
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    assert "Traceback" not in text and "Error" not in text
    assert "AVG" in text and "toy-llava" in text
    shot = tmp_path / "chapter.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                        f"--screenshot={shot}", page], capture_output=True, timeout=120)
    assert shot.stat().st_size > 20_000
