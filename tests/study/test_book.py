"""The smoke profile end to end: every chapter runs through papermill on the committed
teachers and writes rows, the book builds with -W from those runs (one page per study), and
every chapter of the built book is opened in headless Chromium as a reader sees it
(`tests/study/browser.py`), with one screenshot per chapter kept under
book/_build/screenshots/ (CI's artifact)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from studylib.chapters import testbed
from studylib.results import ResultsTable
from studylib.testbed import shapes
from tests.study import browser

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "book" / "_build" / "screenshots"

pytestmark = pytest.mark.slow
STUDIES = ("00_testbed", "01_pruning_comparison", "02_sft_recovery", "03_kd_ablation",
           "04_data_efficiency", "05_best_practices", "06_generalization",
           "07_quantization", "08_resources")


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
    html = book / "_build" / "html"
    for study in STUDIES:
        executed = list((book / "runs" / study).glob("*__smoke.ipynb"))
        assert len(executed) == (2 if study == "01_pruning_comparison" else 1), study
        assert (html / "runs" / f"{study}.html").is_file(), study  # one page per study
        assert not (html / "runs" / study).exists(), study  # the runs are not pages
    assert (book / "figures" / "00_testbed__toy-llava__smoke.png").stat().st_size > 5000
    assert (html / "provenance.html").is_file() and (html / "rerun.html").is_file()
    two = (html / "runs" / "01_pruning_comparison.html").read_text()  # one tab per architecture
    assert two.count('class="sd-tab-label"') >= 4 and "toy-bunny" in two and "toy-llava" in two
    index = (html / "intro.html").read_text()
    assert "our verdict" in index and "runs/05_best_practices.html" in index


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
    assert set(ours.benchmark) == {"GQA", "SQA", "POPE", "MME-P", "MME-C", "MMMU", "AVG",
                                   testbed.OPTION_LOOKUP}  # the text-only binding probe
    assert (ours.study == "00_testbed").all() and (ours.arch == "toy-llava").all()
    scored = ours[ours.benchmark.isin(shapes.BENCHMARKS)]
    assert scored.n.between(1, 40).all()  # smoke-sized subsets
    chance = rows[(rows.model == "chance") & (rows.metric == "score")].set_index("benchmark")
    assert chance.value.gt(0).all()  # a random guesser scores above zero everywhere
    assert chance.value[["GQA", "SQA", "POPE", "MMMU"]].lt(100).all()


def test_provenance_page_is_computed_from_the_results_table(smoke_book):
    book, table, _ = smoke_book
    frame = ResultsTable(table).frame()
    rid = frame[frame.study == "00_testbed"].run_id.iloc[0]
    page = (book / "_build" / "html" / "provenance.html").read_text()
    assert rid in page and "toy-llava__smoke" in page and "wall (s)" in page


def chapters(book: Path) -> list[Path]:
    """Every chapter page of the built book, in TOC order."""
    toc = yaml.safe_load((book / "runs" / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [book / "_build" / "html" / f"{f}.html" for f in files] + [
        book / "_build" / "html" / "intro.html"]


def test_every_chapter_reads_well_in_headless_chromium(smoke_book):
    """Per chapter: every image loaded, no traceback or error text, no nan/None in a table,
    no code beyond the folded cells; one screenshot each."""
    book, _, proc = smoke_book
    assert proc.returncode == 0
    pages = chapters(book)
    assert len(pages) >= len(STUDIES) + 3  # every study, the landing page and the About pages
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems = {}
    for page in pages:
        found = browser.check_page(page)
        if found:
            problems[page.name] = found
        shot = browser.screenshot(page, SCREENSHOTS / f"{page.stem}.png")
        assert shot.stat().st_size > 20_000, page.name
    assert not problems, problems
