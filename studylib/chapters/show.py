"""How a chapter shows a result: numbered tables and figures with captions, and prose.

Each function displays one output bundle with two renderings of the same thing:

- `text/markdown`, a MyST directive (```` ```{table} ```` / ```` ```{figure} ````) with a
  caption and a label. The book renders it (`nb_render_markdown_format: myst` and
  `text/markdown` first for HTML, `book/_config.yml`): Sphinx numbers it, and prose can
  cite it with ``{numref}`label` ``.
- `text/html`, the same table or image with its caption: what JupyterLab shows.

Labels must be unique in the book: build them from the run (`label(P, "fig2")`, or the
figure's file name, both starting with the study's number). That number also numbers the
chapter's tables and figures, "Table 2.1", "Figure 2.3", in the order a notebook shows them:
every architecture's run of a chapter shows the same sequence, so its tabs share the numbers,
and ours never read like the paper's "Table 2". Missing values print as an en dash, never as
`nan` or `None`.
"""

from __future__ import annotations

import base64
import collections
import html
import re
from pathlib import Path
from typing import Any

import pandas as pd

from studylib.chapters import plotting

MISSING = "–"
_shown: collections.Counter = collections.Counter()  # (chapter, kind) -> shown so far


def number(kind: str, name: str) -> str:
    """The next "Table 2.3" of the chapter whose number `name` starts with ("Table 3" when
    it starts with none)."""
    m = re.match(r"\d+", name)
    chapter = int(m.group()) if m else None
    _shown[(chapter, kind)] += 1
    n = _shown[(chapter, kind)]
    return f"{kind} {n}" if chapter is None else f"{kind} {chapter}.{n}"


def label(P: Any, name: str) -> str:
    """A book-wide unique label for one run's table or figure: study, model, key, name."""
    return f"{P.study}-{P.model}-{P.key}-{name}".replace("_", "-").replace(".", "-").lower()


def _display(bundle: dict[str, str]) -> None:
    from IPython.display import display

    display(bundle, raw=True)


EXACT = ("ratio", "fraction", "share")  # columns printed as they are (0.15, not 0.1)


def _formatted(df: pd.DataFrame, decimals: int | dict[str, int]) -> pd.DataFrame:
    """Numbers rounded for reading (ratios and fractions as they are), missing values as an
    en dash."""
    out = df.copy()
    for col in out.columns:
        d = decimals.get(col, 1) if isinstance(decimals, dict) else decimals
        if pd.api.types.is_float_dtype(out[col]):
            spec = "g" if any(w in str(col) for w in EXACT) and not (
                isinstance(decimals, dict) and col in decimals) else f".{d}f"
            out[col] = out[col].map(lambda v, spec=spec: MISSING if pd.isna(v) else f"{v:{spec}}")
        else:
            out[col] = out[col].map(lambda v: MISSING if v is None or (
                isinstance(v, float) and v != v) else v)
    return out


def mean_ci(mean: float, half: float | None = None) -> str:
    """"91.2 ± 3.4" (mean and 95% CI half-width), "91.2" without one, "–" without a mean."""
    if mean is None or pd.isna(mean):
        return MISSING
    return f"{mean:.1f}" if half is None or pd.isna(half) else f"{mean:.1f} ± {half:.1f}"


def interval(value: float, low: float, high: float, signed: bool = False) -> str:
    """"91.2 [88.0, 94.4]", or "+1.2 [-0.3, +2.7]" for a difference (`signed`)."""
    if value is None or pd.isna(value):
        return MISSING
    f = "+.1f" if signed else ".1f"
    return f"{value:{f}} [{low:{f}}, {high:{f}}]"


def _escaped(df: pd.DataFrame) -> pd.DataFrame:
    """`|` escaped, for a Markdown table."""
    out = df.map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v)
    out.columns = [str(c).replace("|", "\\|") for c in out.columns]
    return out


def table(df: pd.DataFrame, caption: str, name: str, *, decimals: int | dict[str, int] = 1,
          index: bool = False, folded: str = "") -> None:
    """Show `df` as a numbered table. A long table can sit `folded` behind a toggle with
    that title. Returns nothing, so that a notebook cell ending with it shows the table once."""
    shown = _formatted(df.reset_index() if index else df, decimals)
    md = _escaped(shown).to_markdown(index=False, disable_numparse=True)
    caption = f"{number('Table', name)}. {caption}"
    block = f"```{{table}} {caption}\n:name: {name}\n:align: left\n\n{md}\n```\n"
    if folded:
        block = f"::::{{dropdown}} {folded}\n{block}::::\n"
    _display({"text/markdown": block,
              "text/html": f"<b>{html.escape(caption)}</b>" + shown.to_html(index=False),
              "text/plain": f"{caption}\n{shown.to_string(index=False)}"})


def figure(fig: Any, name: str, caption: str, figures: str | Path) -> None:
    """Save `fig` as `<figures>/<name>.png` and show it as a numbered figure (label `name`).
    Returns nothing, so that a notebook cell ending with it shows no `PosixPath(...)`."""
    import matplotlib.pyplot as plt

    path = plotting.save(fig, name, figures)
    plt.close(fig)  # shown once, by the bundle below, not again by the inline backend
    png = base64.b64encode(path.read_bytes()).decode()
    caption = f"{number('Figure', name)}. {caption}"
    _display({"text/markdown": f"```{{figure}} /figures/{path.name}\n:name: {name}\n\n"
                               f"{caption}\n```\n",
              "text/html": f'<img src="data:image/png;base64,{png}"/><p>{html.escape(caption)}</p>',
              "text/plain": caption})


def markdown(text: str) -> None:
    """Show prose (MyST) computed from the results, e.g. a chapter's takeaways."""
    _display({"text/markdown": text, "text/plain": text})


def glue(name: str, value: Any, fmt: str = "") -> None:
    """Hand a number to the prose without showing it here; the prose cites it as
    ``{glue:text}`name` `` (or ``{glue:text}`name:.1f` `` to format it there). With `fmt`
    the number is rounded to it first (e.g. ".1f")."""
    from myst_nb import glue as _glue

    if fmt and isinstance(value, int | float):
        value = type(value)(format(value, fmt)) if isinstance(value, float) else value
    _glue(name, value, display=False)
