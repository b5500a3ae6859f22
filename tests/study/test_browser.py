"""tests/study/browser.py against a tiny book of its own: a clean page passes, and each
defect a reader would see (a missing figure, even in an inactive tab; unfolded code; a `nan`
cell; a traceback) is reported. One `jupyter-book build -W`, pages varied per defect."""

import base64
import io
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from PIL import Image, ImageDraw

from tests.study.browser import check_page, screenshot

# No skip without Chromium: `make test` installs it or stops with the command to run, and
# browser.run fails with the package's name.
pytestmark = pytest.mark.slow

CONFIG = """title: browser check
only_build_toc_files: true
execute:
  execute_notebooks: "off"
parse:
  myst_enable_extensions: [colon_fence]
sphinx:
  extra_extensions: [sphinx_design]
"""
TOC = "format: jb-book\nroot: good\nchapters:\n- file: code_visible\n- file: nan_table\n" \
      "- file: traceback\n"
TABS = """::::{tab-set}
:::{tab-item} shown
![x](fig_a.png)
:::
:::{tab-item} hidden at load
![x](fig_b.png)
:::
::::"""
TABLE = ("<table class='dataframe'><thead><tr><th>method</th><th>AVG</th></tr></thead>"
         "<tbody><tr><th>prune</th><td>{}</td></tr></tbody></table>")


def _png(colour: str) -> bytes:
    image = Image.new("RGB", (320, 200), "white")
    ImageDraw.Draw(image).rectangle((40, 40, 280, 160), fill=colour)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _notebook(title: str, *, tags=("hide-input",), avg="93.1", error: bool = False):
    outputs = [new_output("display_data", data={
        "image/png": base64.b64encode(_png("steelblue")).decode(),
        "text/plain": "<Figure>"}),
        new_output("display_data", data={"text/html": TABLE.format(avg),
                                         "text/plain": "table"})]
    if error:
        outputs.append(new_output("error", ename="ValueError", evalue="ratio out of range",
                                  traceback=["Traceback (most recent call last):",
                                             '  File "<cell>", line 1', "ValueError: ratio"]))
    code = new_code_cell("show(results)", metadata={"tags": list(tags)}, outputs=outputs,
                         execution_count=1)
    return new_notebook(cells=[new_markdown_cell(f"# {title}\n\nWhat the figure shows."),
                               code, new_markdown_cell(TABS)],
                        metadata={"kernelspec": {"name": "python3", "language": "python",
                                                 "display_name": "Python 3"},
                                  "language_info": {"name": "python"}})


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    book = tmp_path_factory.mktemp("browser") / "book"
    book.mkdir()
    (book / "_config.yml").write_text(CONFIG)
    (book / "_toc.yml").write_text(TOC)
    (book / "fig_a.png").write_bytes(_png("darkorange"))
    (book / "fig_b.png").write_bytes(_png("seagreen"))
    pages = {"good": _notebook("Clean"), "code_visible": _notebook("Code", tags=()),
             "nan_table": _notebook("Nan", avg="NaN"),
             "traceback": _notebook("Traceback", error=True)}
    for name, nb in pages.items():
        nbformat.write(nb, book / f"{name}.ipynb")
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb) if jb.exists() else "jupyter-book", "build", str(book),
                           "-W"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return book / "_build" / "html"


def test_clean_page_has_no_problems_and_screenshots(html, tmp_path):
    assert check_page(html / "good.html") == []
    assert screenshot(html / "good.html", tmp_path / "good.png").stat().st_size > 10_000


def test_inactive_tab_is_checked_too(html, tmp_path):
    """The second tab is display:none at load: its missing image and its error text count."""
    site = tmp_path / "html"
    shutil.copytree(html, site)
    img = '<img alt="x" src="_images/fig_b.png" />'
    page = (site / "good.html").read_text()
    assert page.count(img) == 1
    (site / "good.html").write_text(page.replace(img, img + "<p>KeyError: 'AVG'</p>"))
    (site / "_images" / "fig_b.png").unlink()
    assert check_page(site / "good.html") == ["image did not load: _images/fig_b.png",
                                              "exception names in the visible text: KeyError:"]


def test_visible_code_input_is_reported(html):
    problems = check_page(html / "code_visible.html")
    assert len(problems) == 1 and problems[0].startswith("1 visible code input(s)")
    assert "show(results)" in problems[0]


def test_nan_table_cell_is_reported(html):
    assert check_page(html / "nan_table.html") == [
        "1 table cell(s) read as missing values: 'NaN' x1"]


def test_traceback_output_is_reported(html):
    problems = check_page(html / "traceback.html")
    assert any(p.startswith("traceback in the visible text") for p in problems), problems
    assert "exception names in the visible text: ValueError:" in problems
    assert "1 myst-nb traceback output area(s) (div.output.traceback)" in problems
