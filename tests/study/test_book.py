"""The smoke profile end to end: every chapter runs through papermill on the committed
teachers and writes rows, the book builds with -W from those runs (one page per study), and
every chapter of the built book is opened in headless Chromium as a reader sees it
(`tests/study/browser.py`: network off, 1280 px), with one screenshot per chapter kept under
book/_build/screenshots/ (CI's artifact).

Chapter 00 also runs on a deliberately weakened teacher (toy-llava with 4 of its 6 LLM layers
removed, `--ratio 0.75`: with one layer left chapter 00's layer check would have nothing to
remove), so that the page's validity admonition is seen whatever the committed teachers
score."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from studylib.chapters import testbed
from studylib.results import ResultsTable
from studylib.study.pages import VALIDITY
from studylib.testbed import shapes
from tests.study import browser

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "book" / "_build" / "screenshots"

pytestmark = pytest.mark.slow
STUDIES = ("00_testbed", "01_pruning_comparison", "02_sft_recovery", "03_kd_ablation",
           "04_data_efficiency", "05_best_practices", "06_generalization",
           "07_quantization", "08_resources")


WEAK = "toy-llava-weak"


def _cli(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "studylib.cli", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory, scratch_book):
    root = tmp_path_factory.mktemp("smoke")
    book = scratch_book(root)
    table = root / "results.jsonl"
    weak = root / "weak"
    for step in (("--threads", "1", "prune", "--model", "teachers/toy-llava", "--method",
                  "layer", "--ratio", "0.75", "--out", str(weak)),
                 ("study", "00_testbed", "--profile", "smoke", "--no-build", "--book",
                  str(book), "--results", str(table), "--set", f"model={WEAK}",
                  f"checkpoint={weak}")):
        made = _cli(*step)
        assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    proc = _cli("study", "--workers", "2", "--profile", "smoke",
                "--book", os.path.relpath(book, REPO),  # relative, as make runs it
                "--results", str(table))
    return book, table, proc


def test_smoke_study_runs_and_builds(smoke_book):
    book, table, proc = smoke_book
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = book / "_build" / "html"
    for study in STUDIES:
        executed = list((book / "runs" / study).glob("*__smoke.ipynb"))
        assert len(executed) == (2 if study in ("00_testbed", "01_pruning_comparison")
                                 else 1), study
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
    rows = rows[rows.run_id.isin(rows[rows.model == "toy-llava"].run_id)]
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
    rid = frame[(frame.study == "00_testbed") & (frame.model == "toy-llava")].run_id.iloc[0]
    page = (book / "_build" / "html" / "provenance.html").read_text()
    assert rid in page and "toy-llava__smoke" in page and "wall (s)" in page


def chapters(book: Path) -> list[Path]:
    """Every chapter page of the built book, in TOC order."""
    toc = yaml.safe_load((book / "runs" / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [book / "_build" / "html" / f"{f}.html" for f in files] + [
        book / "_build" / "html" / "intro.html"]


def flagged_teachers(book: Path, study: str) -> set[str]:
    """The teachers the study's runs found near chance (`Chapter.check_teachers`'s outputs)."""
    import nbformat

    return {m for path in (book / "runs" / study).glob("*.ipynb")
            for cell in nbformat.read(path, as_version=4).cells
            for o in cell.get("outputs", []) for m in o.get("metadata", {}).get(VALIDITY, [])}


def page_problems(book: Path, page: Path) -> tuple[list[str], dict]:
    """`browser.problems_in` for the page, plus a missing admonition: every teacher the
    study's runs found near chance must have a visible `{warning}` above the first result."""
    report = browser.probe(page)
    found = browser.problems_in(report)
    study = page.stem.removeprefix("cdn-").removeprefix("bare-")
    if study in STUDIES[1:]:  # chapters 01-08 end with exercises, each with its solution
        solved = [s for s in (t.replace("’", "'") for t in report["solutions"])
                  if "In this book's run:" in s and "{glue" not in s  # every tab's answer
                  and all(re.match(r"\s*[^.\s]", a) for a in s.split("run:")[1:])]
        if report["exercises"] < 2 or len(solved) != report["exercises"]:
            found.append(f"{report['exercises']} exercise(s), {len(solved)} with a glued "
                         f"solution: {report['solutions'][:2]}")
    if study in STUDIES:
        for teacher in sorted(flagged_teachers(book, study)):
            shown = [w for w in report["warnings"] if f"{teacher} is near chance" in w["text"]]
            if not shown or not all(w["shown"] and w["top"] < report["first_result"]
                                    for w in shown):
                found.append(f"no visible admonition above the results for {teacher}")
    return found, report


def test_every_chapter_reads_well_in_headless_chromium(smoke_book):
    """Per chapter, offline, in a 1280 px window: every image loaded, no traceback or error
    text, no nan/None in a table, no code beyond the folded cells, math typeset from the
    book's own MathJax, one number per caption, no table wider than the text column, and a
    visible admonition above the first result for every teacher the runs found near chance;
    one screenshot each."""
    book, _, proc = smoke_book
    assert proc.returncode == 0
    pages = chapters(book)
    assert len(pages) >= len(STUDIES) + 3  # every study, the landing page and the About pages
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems, typeset = {}, 0
    for page in pages:
        found, report = page_problems(book, page)
        typeset += report["math"]["typeset"]
        if found:
            problems[page.name] = found
        shot = browser.screenshot(page, SCREENSHOTS / f"{page.stem}.png")
        assert shot.stat().st_size > 20_000, page.name
    assert not problems, problems
    assert typeset > 0  # the chapters' formulas, typeset by MathJax served from the book
    assert WEAK in flagged_teachers(book, "00_testbed")  # the deliberate case is checked


def test_the_check_fails_on_cdn_math_and_on_a_missing_admonition(smoke_book):
    """The check's own controls: the same pages with MathJax pointed back at its CDN (no
    network: raw LaTeX), and with the admonitions cut out."""
    book, _, proc = smoke_book
    assert proc.returncode == 0
    html = book / "_build" / "html" / "runs"
    local = 'src="../_static/mathjax/tex-chtml.js"'
    page = (html / "01_pruning_comparison.html").read_text()
    assert local in page
    cdn = html / "cdn-01_pruning_comparison.html"
    cdn.write_text(page.replace(local, 'src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/'
                                       'tex-chtml.js"'))
    found, report = page_problems(book, cdn)
    assert report["math"] == {"typeset": 0, "raw": report["math"]["raw"], "loaded": False}
    assert any("raw LaTeX" in p for p in found), found
    page = (html / "00_testbed.html").read_text()
    bare = html / "bare-00_testbed.html"
    bare.write_text(re.sub(r'<div class="(?:warning admonition|admonition warning)">.*?</div>', "", page,
                           flags=re.S))
    found, _ = page_problems(book, bare)
    assert f"no visible admonition above the results for {WEAK}" in found


def _poppler(tool: str, *args: str) -> str:
    return subprocess.run([tool, *args], capture_output=True, text=True, check=True).stdout


def test_the_pdf_has_every_chapter_its_figures_and_one_number_per_caption(smoke_book):
    """`studylib pdf` (make pdf) on the smoke book, read back with poppler: every chapter's
    title, the verdict table, as many of our captions as the one-page HTML has and none of
    Sphinx's numbers, and on every page with a figure caption a drawn, non-blank image."""
    from PIL import Image, ImageStat

    book, _, proc = smoke_book
    assert proc.returncode == 0
    made = _cli("pdf", "--book", str(book), timeout=900)
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    pdf = book / "_build" / "pdf" / "book.pdf"
    n_pages = int(re.search(r"Pages:\s+(\d+)", _poppler("pdfinfo", str(pdf))).group(1))
    pages = _poppler("pdftotext", "-layout", str(pdf), "-").split("\f")[:n_pages]
    text = " ".join(" ".join(pages).split()).replace("’", "'")  # Sphinx's smart quotes
    for study in STUDIES:  # each chapter's heading, as its page has it
        import nbformat

        first = nbformat.read(book / "runs" / f"{study}.ipynb", as_version=4).cells[0].source
        assert first.splitlines()[0].removeprefix("# ") in text, study
    assert "our verdict" in text and "the paper's finding" in text
    one_page = (book / "_build" / "singlehtml" / "intro.html").read_text()  # the TOC's root
    assert "caption-number" not in one_page
    ours = len(re.findall(r'class="caption-text">(?:Figure|Table) \d+\.\d+\. ', one_page))
    assert ours > 20 and len(re.findall(r"(?:Figure|Table) \d+\.\d+\. ", text)) >= ours
    figure_pages = [i + 1 for i, p in enumerate(pages) if re.search(r"Figure \d+\.\d+\. ", p)]
    assert len(figure_pages) >= 10
    images = _poppler("pdfimages", "-list", str(pdf)).splitlines()[2:]
    with_image = {int(line.split()[0]) for line in images if int(line.split()[3]) >= 50}
    assert set(figure_pages) <= with_image, sorted(set(figure_pages) - with_image)
    shots = book / "_build" / "pdf" / "pages"  # the rendered figure pages, for a human
    shots.mkdir(exist_ok=True)
    for page in figure_pages:
        at = ["-f", str(page), "-l", str(page)]
        _poppler("pdftoppm", "-r", "40", "-png", *at, "-singlefile", str(pdf),
                 str(shots / f"page-{page:03d}"))
        _poppler("pdfimages", "-png", *at, str(pdf), str(shots / f"image-{page:03d}"))
        spread = [ImageStat.Stat(Image.open(f).convert("L")).stddev[0]
                  for f in shots.glob(f"image-{page:03d}-*.png")]
        assert max(spread) > 10, (page, spread)  # the figure is drawn, not a blank box
