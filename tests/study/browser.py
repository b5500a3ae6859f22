"""Check a built book page as a reader sees it, in headless Chromium.

`jupyter-book build -W` catches broken references, but not a figure that 404s, a traceback
papermill baked into an output, a `nan` in a results table or teaching code left unfolded:
those only show once a browser renders the page. `check_page` renders it and lists them.

Chromium's `--dump-dom` gives the DOM after scripts ran, so a probe script appended to a
sibling copy of the page (same directory: relative image paths still resolve) measures the
page on `window load` and writes a JSON report into `<pre id="probe">`, which we read back.
"""

from __future__ import annotations

import html as htmllib
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
WINDOW = "--window-size=1200,1600"
BAD_CELLS = {"nan", "NaN", "NaT", "None", "<NA>", "nan%"}
ERROR_NAME = re.compile(r"\b[A-Z][A-Za-z0-9]*(?:Error|Exception)\b:")
TRACEBACK = "Traceback (most recent call last)"

# Runs inline at the end of <body>, i.e. before `load`: inactive sphinx-design tab panels are
# display:none and lazy images there would never be fetched, so every panel is shown and every
# image made eager first; `load` then waits for all of them. The text is read with the panels
# shown (a reader can click every tab) but <details> as built (folded code stays folded).
PROBE = r"""
<pre id="probe"></pre>
<script>
(function () {
  document.querySelectorAll(".sd-tab-content").forEach(p => { p.style.display = "block"; });
  document.querySelectorAll("img").forEach(i => { i.loading = "eager"; });
  window.addEventListener("load", function () {
    const folded = el => { const d = el.closest("details"); return d !== null && !d.open; };
    const report = {
      images: Array.from(document.images).map(i => ({
        src: i.getAttribute("src"), ok: i.complete && i.naturalWidth > 0})),
      code: Array.from(document.querySelectorAll("div.cell_input")).filter(c => !folded(c))
        .map(c => c.innerText.trim().split("\n")[0].slice(0, 80)),
      errors: Array.from(document.querySelectorAll("div.output.stderr, div.output.traceback"))
        .map(o => o.className.includes("traceback") ? "traceback" : "stderr"),
      cells: Array.from(document.querySelectorAll("td, th")).map(c => c.textContent.trim()),
      text: document.body.innerText,
    };
    document.getElementById("probe").textContent = JSON.stringify(report);
  });
})();
</script>
"""


def _chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """One Chromium run with a throwaway profile, so parallel runs never share a lock."""
    if CHROMIUM is None:
        raise RuntimeError("headless checks need Debian's chromium: run "
                           "`sudo apt-get install -y chromium` (or `make test` as root)")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def probe(html: Path, budget_ms: int = 10_000) -> dict:
    """The probe's JSON report for `html` (see PROBE); raises if the probe never reported."""
    html = Path(html).resolve()
    page = html.read_text(encoding="utf-8")
    cut = page.lower().rfind("</body>")
    page = page[:cut] + PROBE + page[cut:] if cut >= 0 else page + PROBE
    copy = html.with_name(f".probe-{html.name}")
    copy.write_text(page, encoding="utf-8")
    try:
        proc = _chromium(WINDOW, f"--virtual-time-budget={budget_ms}", "--dump-dom",
                         copy.as_uri())
    finally:
        copy.unlink(missing_ok=True)
    found = re.search(r'<pre[^>]*\bid="probe"[^>]*>(.*?)</pre>', proc.stdout, flags=re.S)
    if proc.returncode != 0 or not found or not found.group(1).strip():
        raise RuntimeError(f"probe of {html} did not report (exit {proc.returncode}): "
                           f"{proc.stderr[-1500:]}")
    return json.loads(htmllib.unescape(found.group(1)))


def problems_in(report: dict) -> list[str]:
    """Human-readable problems in a probe report; empty means the page reads cleanly."""
    out = [f"image did not load: {im['src']}" for im in report["images"] if not im["ok"]]
    text = report["text"]
    if TRACEBACK in text:
        out.append(f"traceback in the visible text ({text.count(TRACEBACK)}x)")
    names = sorted({m.group(0) for m in ERROR_NAME.finditer(text)})
    if names:
        out.append(f"exception names in the visible text: {', '.join(names)}")
    for kind in ("traceback", "stderr"):
        n = report["errors"].count(kind)
        if n:
            out.append(f"{n} myst-nb {kind} output area(s) (div.output.{kind})")
    bad = [c for c in report["cells"] if c in BAD_CELLS]
    if bad:
        counts = ", ".join(f"{v!r} x{bad.count(v)}" for v in sorted(set(bad)))
        out.append(f"{len(bad)} table cell(s) read as missing values: {counts}")
    if report["code"]:
        first = "; ".join(repr(line) for line in report["code"][:3])
        out.append(f"{len(report['code'])} visible code input(s) outside a closed <details> "
                   f"(tag them hide-input / remove-input): {first}")
    return out


def check_page(html: Path) -> list[str]:
    """Open the built page in headless Chromium; list what a reader would see go wrong:
    images that did not load (hidden tabs included), tracebacks or exception text, myst-nb
    stderr/traceback outputs, nan/None/<NA> table cells, and code inputs not folded away."""
    return problems_in(probe(html))


def screenshot(html: Path, out: Path, size: str = "1200,1600") -> Path:
    """A PNG of the page's first window, for a human to glance at (or attach to a report)."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    proc = _chromium(f"--window-size={size}", f"--screenshot={out}",
                     Path(html).resolve().as_uri())
    if not out.is_file():
        raise RuntimeError(f"no screenshot of {html} (exit {proc.returncode}): "
                           f"{proc.stderr[-1500:]}")
    return out
