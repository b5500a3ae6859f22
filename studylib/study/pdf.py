"""The book as one PDF, for courses and reading groups: `make pdf` (`studylib pdf`).

jupyter-book's `pdfhtml` builder is two steps: the whole book as one HTML page (Sphinx's
`singlehtml` builder), then a headless Chromium prints it. Its printing step drives
Playwright's own Chromium, which `playwright install` downloads from Playwright's servers:
offline, it fails. This module runs the same two steps with the Chromium the book's page
checks already use (Debian's `chromium`): `jupyter-book build --builder singlehtml`, then
`chromium --print-to-pdf`. The print stylesheet and script in `book/_static/` show every
architecture's tab one after the other and open the folded tables; folded code stays folded.

The PDF is built from the chapters `studylib study` already executed into book/runs (run
`make book` first); nothing is executed here. It is written atomically.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from studylib.errors import StudyError

# Chromium as the book's page checks start it (tests/study/browser.py), printing instead of
# dumping; the virtual-time budget lets MathJax typeset and every image load before it prints.
PRINT_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--proxy-server=127.0.0.1:9", "--no-pdf-header-footer",
               "--virtual-time-budget=30000"]
PRINT_TIMEOUT_S = 600


def chromium() -> str:
    """The Chromium binary; raises with the one command that installs it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise StudyError("the PDF is printed by headless Chromium, which is missing: run "
                         "'sudo apt-get install -y chromium' (Debian/Ubuntu)")
    return found


def single_page(book: Path) -> Path:
    """`jupyter-book build --builder singlehtml` of the executed book: the page itself, named
    after the TOC's root (index.html only redirects to it)."""
    import yaml

    toc = book / "runs" / "_toc.yml"
    if not toc.is_file():
        raise StudyError(f"no executed book in {book} (no {toc}): run `make book` first")
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(book.resolve()),
           "--toc", str(toc.resolve()), "--builder", "singlehtml", "-W", "--keep-going"]
    print("building the book as one page:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise StudyError(f"the one-page build failed (warnings are errors):\n{tail}")
    root = yaml.safe_load(toc.read_text())["root"]
    return book / "_build" / "singlehtml" / f"{root}.html"


def print_pdf(html: Path, out: Path) -> Path:
    """Print `html` to `out` with headless Chromium; `out` is replaced only when complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        proc = subprocess.run([chromium(), *PRINT_FLAGS, f"--user-data-dir={profile}",
                               f"--print-to-pdf={tmp}", html.resolve().as_uri()],
                              capture_output=True, text=True, timeout=PRINT_TIMEOUT_S)
    if not tmp.is_file() or tmp.stat().st_size == 0:
        raise StudyError(f"Chromium printed no PDF of {html} (exit {proc.returncode}): "
                         f"{proc.stderr[-1500:]}")
    tmp.replace(out)
    return out


def build_pdf(book: Path, out: Path | None = None) -> Path:
    """The executed `book` as one PDF (default book/_build/pdf/book.pdf)."""
    out = out or book / "_build" / "pdf" / "book.pdf"
    return print_pdf(single_page(book), out)
