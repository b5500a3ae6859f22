"""Check a built book page as a reader sees it, in headless Chromium.

`jupyter-book build -W` catches broken references, but not a figure that 404s, a traceback
papermill baked into an output, a `nan` in a results table, teaching code left unfolded, math
left as raw LaTeX because MathJax did not load, a caption with two numbers or a table cut by
the text column: those only show once a browser renders the page. `check_page` renders it,
with the network off (every http(s) request goes to a dead proxy: the book must read offline),
in a 1280 px window, and lists them.

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
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--proxy-server=127.0.0.1:9"]  # network off: nothing listens on port 9
WINDOW = "--window-size=1280,1600"  # a laptop's window: every table must fit it
BAD_CELLS = {"nan", "NaN", "NaT", "None", "<NA>", "nan%"}
ERROR_NAME = re.compile(r"\b[A-Z][A-Za-z0-9]*(?:Error|Exception)\b:")
REPR = re.compile(r"\bPosixPath\(|<Figure size|<matplotlib\.")  # a cell's value printed
TRACEBACK = "Traceback (most recent call last)"
# A caption opens with our per-chapter number, "Figure 3.1. " (`chapters.show.number`),
# and nothing before it ("Fig. 34 Figure 3.1." is Sphinx's book-wide number in front of ours).
ONE_NUMBER = re.compile(r"(Figure|Table) \d+(\.\d+)?\. ")

# Runs inline at the end of <body>, i.e. before `load`: inactive sphinx-design tab panels are
# display:none and lazy images there would never be fetched, so every panel is shown and every
# image made eager first; `load` then waits for all of them. The text is read with the panels
# shown (a reader can click every tab) but <details> as built (folded code stays folded).
# The report waits for MathJax's typesetting when MathJax loaded; when it did not (no network,
# a CDN path), the math stays raw and the report says so.
PROBE = r"""
<pre id="probe"></pre>
<script>
(function () {
  document.querySelectorAll(".sd-tab-content").forEach(p => { p.style.display = "block"; });
  document.querySelectorAll("img").forEach(i => { i.loading = "eager"; });
  const visibleText = function () {  // the page's text outside code and typeset math
    const skip = "pre, code, script, style, mjx-container, #probe";
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const out = [];
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      if (!n.parentElement.closest(skip)) out.push(n.textContent);
    }
    return out.join(" ");
  };
  const report = function () {
    const folded = el => { const d = el.closest("details"); return d !== null && !d.open; };
    const text = visibleText();
    const report = {
      math: {typeset: document.querySelectorAll("mjx-container").length,
             raw: (text.match(/\\\(|\\\[|\$\$/g) || []).length,
             loaded: !!(window.MathJax && window.MathJax.startup)},
      captions: Array.from(document.querySelectorAll("figcaption, table > caption"))
        .map(c => c.textContent.trim()),
      sphinx_numbers: document.querySelectorAll(".caption-number").length,
      wide: Array.from(document.querySelectorAll("article table")).map(t => {
          const box = t.closest(".pst-scrollable-table-container") || t.parentElement;
          return {table: t.innerText.slice(0, 60), width: t.scrollWidth,
                  room: box.clientWidth};
        }).filter(w => w.width > w.room + 1),
      warnings: Array.from(document.querySelectorAll("div.admonition.warning"))
        .map(w => ({text: w.innerText.trim(), top: w.getBoundingClientRect().top,
                    shown: w.offsetHeight > 0})),
      exercises: document.querySelectorAll("div.exercise").length,
      solutions: Array.from(document.querySelectorAll(".solution"))
        .map(s => s.textContent.replace(/\s+/g, " ").trim()),
      first_result: Math.min(...Array.from(document.querySelectorAll(
        "article figure, article table")).map(e => e.getBoundingClientRect().top), 1e9),
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
  };
  window.addEventListener("load", function () {
    const typeset = window.MathJax && window.MathJax.startup && window.MathJax.startup.promise;
    Promise.resolve(typeset).then(report, report);
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
    reprs = sorted({m.group(0) for m in REPR.finditer(text)})
    if reprs:
        out.append(f"a cell's return value printed on the page: {', '.join(reprs)}")
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
    math = report["math"]
    if math["raw"]:
        out.append(f"{math['raw']} raw LaTeX delimiter(s) in the text: MathJax did not typeset "
                   f"({'it loaded' if math['loaded'] else 'it did not load: offline?'})")
    if report["sphinx_numbers"]:
        out.append(f"{report['sphinx_numbers']} caption(s) with Sphinx's book-wide number "
                   "in front of ours")
    twice = [c[:50] for c in report["captions"] if not ONE_NUMBER.match(c)]
    if twice:
        out.append(f"{len(twice)} caption(s) without exactly one number of ours: {twice[:3]}")
    for w in report["wide"]:
        out.append(f"table wider than the text column ({w['width']} > {w['room']} px, it "
                   f"scrolls): {w['table']!r}")
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


def screenshot(html: Path, out: Path, size: str = "1280,1600") -> Path:
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
