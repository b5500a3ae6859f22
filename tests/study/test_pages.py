"""One chapter page per study from its executed runs (`studylib.study.pages`), the TOC by
question and the landing page's verdict table (`studylib.study.book`)."""

import base64
import json

import nbformat
import pytest
import yaml

from studylib.errors import StudyError
from studylib.evaluation import chance
from studylib.results import ResultsTable
from studylib.study import book, pages

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")).decode()


def _run(model: str, value: float, *, extra_cell: bool = False) -> nbformat.NotebookNode:
    """An executed run of a three-code-cell template, as papermill leaves it."""
    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.metadata["papermill"] = {"parameters": {"overrides": {"model": model}}}
    setup = v4.new_code_cell("ch = open_chapter(...)", outputs=[
        v4.new_output("stream", name="stdout", text=f"study x, model {model}\n")])
    setup.metadata["tags"] = ["remove-cell"]
    same = v4.new_code_cell("rule()", outputs=[v4.new_output("stream", name="stdout",
                                                             text="the rule\n")])
    result = v4.new_code_cell("show.table(...)", outputs=[
        v4.new_output("display_data", data={"text/markdown": f"```{{table}} AVG of {model}\n"
                                                             f":name: tab-{model}\n\n| a |\n|---|\n| {value} |\n```\n",
                                            "text/plain": "t"}),
        v4.new_output("display_data", data={"image/png": PNG}),
        v4.new_output("display_data", data={"text/plain": repr(value)},
                      metadata={"scrapbook": {"name": "avg", "mime_prefix": ""}}),
        v4.new_output("display_data",  # as show.glue leaves it: not displayed, prefixed
                      data={"application/papermill.record/text/plain": repr(f"{model} said")},
                      metadata={"scrapbook": {"name": "said",
                                              "mime_prefix": "application/papermill.record/"}}),
        v4.new_output("stream", name="stderr", text="NearChanceWarning\n")])
    result.metadata["tags"] = ["hide-input"]
    injected = v4.new_code_cell("overrides = {}")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells = [v4.new_markdown_cell("# A question\n\nNarrative."), injected, setup, same, result,
                v4.new_markdown_cell("The teacher's AVG is {glue:text}`avg:.1f`; "
                                     "{glue:text}`said`.")]
    if extra_cell:
        nb.cells.append(v4.new_code_cell("1"))
    return nb


@pytest.fixture()
def runs(tmp_path):
    study = tmp_path / "runs" / "02_sft_recovery"
    study.mkdir(parents=True)
    paths = []
    for model, value in (("toy-llava", 61.25), ("toy-bunny", 48.5)):
        path = study / f"{model}__fig2.ipynb"
        nbformat.write(_run(model, value), path)
        paths.append(path)
    return tmp_path, paths


def test_one_page_per_study_with_a_tab_per_architecture(runs):
    root, paths = runs
    out = pages.chapter_page("02_sft_recovery", paths, root / "runs" / "02_sft_recovery.ipynb")
    cells = nbformat.read(out, as_version=4).cells
    sources = [c.source for c in cells]
    assert sources.count("# A question\n\nNarrative.") == 1  # the narrative once
    assert not any("overrides" in s for s in sources)  # papermill's injected cell is gone
    assert cells[1].metadata["tags"] == ["remove-cell"]  # scaffolding: myst-nb leaves it out
    assert cells[2].source == "rule()" and cells[2].outputs  # same in every run: shown once
    code = cells[3]
    assert code.source == "show.table(...)" and code.outputs == []
    assert "hide-input" in code.metadata["tags"]
    tabs = cells[4].source
    assert tabs.startswith("::::{tab-set}") and ":sync-group: run" in tabs
    assert tabs.index("{tab-item} toy-llava") < tabs.index("{tab-item} toy-bunny")
    assert "AVG of toy-llava" in tabs and "AVG of toy-bunny" in tabs
    assert "NearChanceWarning" not in tabs  # stderr is for the terminal
    image = tabs.split("{image} /")[1].split("\n")[0]
    assert (root / image).is_file()  # the image became a file beside the page
    glued = cells[5].source  # the narrative's number, once per run
    assert "The teacher's AVG is 61.2; toy-llava said." in glued
    assert "The teacher's AVG is 48.5; toy-bunny said." in glued


def test_a_single_run_is_its_notebook(runs):
    root, paths = runs
    out = pages.chapter_page("02_sft_recovery", paths[:1], root / "runs" / "02.ipynb")
    cells = nbformat.read(out, as_version=4).cells
    assert [c.source for c in cells][-1] == ("The teacher's AVG is {glue:text}`avg:.1f`; "
                                             "{glue:text}`said`.")
    assert cells[3].outputs  # outputs in place, glue and all: myst-nb renders them
    assert not any("{tab-set}" in c.source for c in cells)


def _admonition(model: str) -> dict:
    """The output `Chapter.check_teachers` leaves in a scaffolding cell."""
    text = chance.admonition(model, {"POPE": "POPE 40.0 is near ..."}, "So ...")
    return nbformat.v4.new_output("display_data", data={"text/markdown": text},
                                  metadata={pages.VALIDITY: [model]})


@pytest.mark.parametrize("n_runs", [1, 2])
def test_validity_admonitions_go_under_the_title_once_each(runs, n_runs):
    root, paths = runs
    for path in paths:  # both runs flag toy-llava (e.g. chapter 05 judging both), one toy-bunny
        nb = nbformat.read(path, as_version=4)
        nb.cells[2].outputs += [_admonition("toy-llava"), _admonition(nb.metadata["papermill"][
            "parameters"]["overrides"]["model"])]
        nbformat.write(nb, path)
    out = pages.chapter_page("02_sft_recovery", paths[:n_runs], root / "runs" / "02.ipynb")
    cells = nbformat.read(out, as_version=4).cells
    assert cells[0].source == "# A question"
    top = cells[1].source
    assert top.count("{admonition} toy-llava is near chance") == 1
    assert top.count("{admonition} toy-bunny is near chance") == (n_runs == 2)
    assert cells[2].source == "Narrative."
    assert sum("is near chance" in c.source for c in cells if c.cell_type == "markdown") == 1


def test_a_page_without_admonitions_keeps_its_first_cell(runs):
    root, paths = runs
    out = pages.chapter_page("02_sft_recovery", paths, root / "runs" / "02.ipynb")
    assert nbformat.read(out, as_version=4).cells[0].source == "# A question\n\nNarrative."


def test_a_solution_citing_glued_numbers_is_one_solution_with_a_tab_per_run(runs):
    root, paths = runs
    solution = "````{solution} ex-1\n:class: dropdown\n\nAVG {glue:text}`avg:.1f`.\n````"
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nb.cells.append(nbformat.v4.new_markdown_cell(solution))
        nbformat.write(nb, path)
    out = pages.chapter_page("02_sft_recovery", paths, root / "runs" / "02.ipynb")
    last = nbformat.read(out, as_version=4).cells[-1].source
    assert last.startswith("````{solution} ex-1\n:class: dropdown\n") and last.count("{solution}") == 1
    assert last.rstrip().endswith("````") and last.count("{tab-item}") == 2
    assert "AVG 61.2." in last and "AVG 48.5." in last


def test_runs_of_different_templates_are_refused(runs):
    root, paths = runs
    nbformat.write(_run("toy-bunny", 1.0, extra_cell=True), paths[1])
    with pytest.raises(StudyError, match="different cells"):
        pages.chapter_page("02_sft_recovery", paths, root / "runs" / "x.ipynb")


def test_a_cited_number_the_run_did_not_glue_is_an_error():
    with pytest.raises(StudyError, match="'teacher'"):
        pages.fill_glue("AVG {glue:text}`teacher:.1f`", {"avg": "1.0"})


def test_toc_is_one_chapter_per_study_in_the_readers_words(runs):
    root, _ = runs
    (root / "_toc.yml").write_text(yaml.safe_dump(
        {"format": "jb-book", "root": "intro", "parts": [{"caption": "About",
                                                            "chapters": [{"file": "rerun"}]}]}))
    toc = yaml.safe_load(book.write_toc(root).read_text())
    first = toc["parts"][0]
    assert first["caption"] == "Pruning and recovery"
    assert first["chapters"] == [{"file": "runs/02_sft_recovery",
                                  "title": "02 · " + book.STUDY_TITLES["02_sft_recovery"]}]
    assert toc["parts"][-1]["caption"] == "About"
    assert (root / "runs" / "02_sft_recovery.ipynb").is_file()


def test_landing_page_verdicts_come_from_the_newest_chapter_05_run(tmp_path):
    table = ResultsTable(tmp_path / "results.jsonl")
    base = {"study": "05_best_practices", "model": "findings", "metric": "verdict",
            "benchmark": "finding 1", "n": 2, "supported": 2, "contradicted": 0, "ties": 0,
            "untested": 0, "median_d": 8.25, "seeds": "3"}
    table.record("old", [{**base, "arch": "toy-llava", "verdict": "not replicated",
                          "on_arch": "opposite"}], {})
    table.record("new", [{**base, "arch": a, "verdict": "replicated", "on_arch": "holds"}
                         for a in ("toy-bunny", "toy-llava")], {})
    df = book.results_frame([str(tmp_path / "results.jsonl")])
    for study in ("05_best_practices", "01_pruning_comparison"):  # the pages in this book
        (tmp_path / "runs" / study).mkdir(parents=True)
        (tmp_path / "runs" / study / "toy-llava.ipynb").write_text("{}")
    text = book.write_verdicts(tmp_path, df).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| 1."))
    assert "**replicated**" in row and "not replicated" not in row
    assert row.index("holds (2+ 0− 0=; d +8.2)") > 0
    assert text.index("toy-llava") < text.index("toy-bunny")  # the book's architecture order
    assert "{doc}`" in row and "/runs/01_pruning_comparison" in row
    assert "| 2. " in text and "not measured" in text
    assert "</runs/05_best_practices>`" in text.splitlines()[-1]  # the rule's chapter
    # A chapter whose page is not in this book is named, not linked (its link would break
    # the build, which treats warnings as errors).
    row2 = next(line for line in text.splitlines() if line.startswith("| 2."))
    assert "/runs/02_sft_recovery" not in row2 and "*02 · " in row2
    assert json.dumps(text)  # plain text


def test_the_landing_page_says_why_a_finding_is_testbed_limited(tmp_path):
    table = ResultsTable(tmp_path / "results.jsonl")
    caveat = "keeps 88% of its AVG with 60% of its layers removed (the paper's models 7-13%)"
    table.record("r", [{"study": "05_best_practices", "model": "findings", "metric": "verdict",
                        "benchmark": "finding 1", "arch": "toy-llava", "n": 2, "supported": 0,
                        "contradicted": 2, "ties": 0, "untested": 0, "median_d": -8.0,
                        "seeds": "3", "verdict": "testbed-limited",
                        "on_arch": "testbed-limited", "caveat": caveat}], {})
    (tmp_path / "runs" / "05_best_practices").mkdir(parents=True)
    (tmp_path / "runs" / "05_best_practices" / "toy-llava.ipynb").write_text("{}")
    text = book.write_verdicts(tmp_path, book.results_frame([str(tmp_path / "results.jsonl")]))
    text = text.read_text()
    assert "**testbed-limited**" in text and f"toy-llava's teacher {caveat}" in text


def test_a_book_without_chapter_05_says_so_on_the_landing_page(tmp_path):
    (tmp_path / "runs" / "01_pruning_comparison").mkdir(parents=True)
    (tmp_path / "runs" / "01_pruning_comparison" / "toy-llava.ipynb").write_text("{}")
    text = book.write_verdicts(tmp_path, book.results_frame([])).read_text()
    assert "No verdicts yet" in text and "{doc}" not in text


def test_two_runs_of_one_architecture_get_their_keys_in_the_tab(runs):
    root, paths = runs
    smoke = paths[0].with_name("toy-llava__smoke.ipynb")
    nbformat.write(_run("toy-llava", 50.0), smoke)
    out = pages.chapter_page("02_sft_recovery", [*paths, smoke], root / "runs" / "x.ipynb")
    tabs = nbformat.read(out, as_version=4).cells[4].source
    assert "{tab-item} toy-llava · fig2" in tabs and "{tab-item} toy-llava · smoke" in tabs
    assert "{tab-item} toy-bunny\n" in tabs


def test_a_run_titled_in_its_params_file_is_its_tab(runs):
    root, paths = runs
    nb = nbformat.read(paths[0], as_version=4)
    nb.metadata["papermill"]["parameters"]["overrides"]["title"] = "toy-llava: every recipe at 30%"
    nbformat.write(nb, paths[0])
    out = pages.chapter_page("03_kd_ablation", paths, root / "runs" / "x.ipynb")
    tabs = nbformat.read(out, as_version=4).cells[4].source
    assert "{tab-item} toy-llava: every recipe at 30%\n:sync: toy-llava-every-recipe-at-30" in tabs


def test_a_folded_table_in_a_tab_does_not_close_it():
    body = "::::{dropdown} All claims\n```{table} t\n:name: x\n\n| a |\n|---|\n| 1 |\n```\n::::\n"
    tabs = pages._tabs(["toy-llava", "toy-bunny"], [body, "text"])
    assert tabs.startswith("::::::{tab-set}") and ":::::{tab-item} toy-llava" in tabs
    assert tabs.rstrip().endswith("\n::::::")
