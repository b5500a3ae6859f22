"""The book's Sphinx extension: what `book/_config.yml` cannot say on its own.

One numbering. Every caption carries the chapter's own number, "Figure 3.1"
(`chapters.show.number`). Sphinx would put its book-wide one in front ("Fig. 34 Figure
3.1."), and `numfig: false` in `_config.yml` does not stop it: jupyter-book always loads
`sphinx_jupyterbook_latex`, whose `config-inited` handler sets `numfig = True` for every
builder. This handler runs after it (a higher priority number runs later) and turns it off.

One page for the PDF. `make pdf` builds the book with Sphinx's `singlehtml` builder. Sphinx
looks up how to write a node under the builder's name and falls back to its format ("html")
only when no extension registered anything for that name. `sphinx_exercise` registers its
nodes for "singlehtml", so the fallback is lost for every other node (myst-nb's folded code
cells: "unknown node type: HideCodeCellNode"). `singlehtml_writes_html` gives "singlehtml"
every HTML handler it lacks.
"""

from __future__ import annotations

AFTER_OTHER_EXTENSIONS = 900  # Sphinx's default priority is 500


def one_numbering(app, config) -> None:
    config.numfig = False


def singlehtml_writes_html(app) -> None:
    handlers = app.registry.translation_handlers
    single = handlers.setdefault("singlehtml", {})
    for node, visitors in handlers.get("html", {}).items():
        single.setdefault(node, visitors)


def setup(app) -> dict:
    app.connect("config-inited", one_numbering, priority=AFTER_OTHER_EXTENSIONS)
    app.connect("builder-inited", singlehtml_writes_html)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
