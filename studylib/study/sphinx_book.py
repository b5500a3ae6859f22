"""The book's Sphinx extension: what `book/_config.yml` cannot say on its own.

One numbering. Every caption carries the chapter's own number, "Figure 3.1"
(`chapters.show.number`). Sphinx would put its book-wide one in front ("Fig. 34 Figure
3.1."), and `numfig: false` in `_config.yml` does not stop it: jupyter-book always loads
`sphinx_jupyterbook_latex`, whose `config-inited` handler sets `numfig = True` for every
builder. This handler runs after it (a higher priority number runs later) and turns it off.
"""

from __future__ import annotations

AFTER_OTHER_EXTENSIONS = 900  # Sphinx's default priority is 500


def one_numbering(app, config) -> None:
    config.numfig = False


def setup(app) -> dict:
    app.connect("config-inited", one_numbering, priority=AFTER_OTHER_EXTENSIONS)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
