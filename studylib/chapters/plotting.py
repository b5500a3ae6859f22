"""The book's figures: one function per figure, drawn from the results table only.

`set_theme()` once per notebook; every method and recipe keeps one colour across the whole
book (`COLORS`), so a reader learns "orange = widthwise" once. Where the paper reports the
same quantity, its numbers (the shared CSV tables in studylib/analysis/paper_tables/) are drawn beside
ours, labelled "paper (LLaVA-7B)" vs "this study (toy-llava)".
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.rcParams.setdefault("figure.max_open_warning", 0)

import matplotlib.pyplot as plt  # noqa: E402

# Fixed colours: methods, recovery recipes, and the reference series.
COLORS = {
    # sources
    "this study": "#1f77b4",
    "paper": "#7f7f7f",
    "chance": "#000000",
    # pruning methods
    "none": "#1f77b4",
    "layer": "#2ca02c",
    "width": "#ff7f0e",
    # recovery recipes
    "prune only": "#c7c7c7",
    "sft mm": "#9edae5",
    "sft mm+llm": "#17becf",
    "sft": "#17becf",
    "kl": "#bcbd22",
    "rkl": "#8c564b",
    "l2": "#e377c2",
    "sft+kl": "#d4d46a",
    "sft+rkl": "#c49c94",
    "sft+l2": "#d62728",
    "sft+rkl+l2": "#9467bd",
}


def color(name: str) -> str:
    """The book-wide colour of a method/recipe/source (unknown names get a stable colour)."""
    key = name.lower()
    if key in COLORS:
        return COLORS[key]
    palette = plt.get_cmap("tab20").colors
    return matplotlib.colors.to_hex(palette[sum(map(ord, key)) % len(palette)])


def set_theme() -> None:
    """The book's style; call once per notebook before drawing."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "savefig.bbox": "tight",
                         "axes.titleweight": "bold", "legend.frameon": False})


def save(fig, name: str, directory: str | Path = "book/figures") -> Path:
    """Save a figure as PNG under `directory` (atomically) and return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".png", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:  # a unique temp name: parallel runs never collide
            fig.savefig(f, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path











