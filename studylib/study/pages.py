"""One book page per study, assembled from its executed runs.

A study runs its notebook once per architecture (and per params entry): `book/runs/<study>/
<model>__<key>.ipynb`. Those runs are the computation; the reader wants one chapter per
question, with the architectures side by side. `chapter_page` writes it, `book/runs/
<study>.ipynb`, from the runs' cells (every run executed the same template):

- a markdown cell is the study's narrative: shown once;
- a code cell tagged `remove-cell` (scaffolding: parameters, imports) is kept as the first
  run has it, and myst-nb leaves it out of the page;
- a code cell whose outputs are the same in every run is shown once, as it is;
- any other code cell is shown once, folded (`hide-input`), followed by its outputs in one
  tab per run (sphinx-design tabs, synchronised across the page: choosing `toy-bunny` once
  shows toy-bunny everywhere). Outputs become MyST: `text/markdown` as it is (the numbered
  tables and figures of `studylib.chapters.show`), images as files, HTML as raw HTML, text
  as a literal block.
- numbers glued in a run (`show.glue`) and cited in the narrative (``{glue:text}`name` ``)
  are written into that paragraph, once per run, in tabs.

- a run's validity admonitions (a teacher near chance, `Chapter.check_teachers`: outputs
  marked `VALIDITY`, shown by scaffolding cells the page leaves out) go to the top of the
  page, under its title, each once, for every run: the reader sees them before any number.

A study with one run gets its notebook as it is, less its scaffolding cells.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from studylib.errors import StudyError

GLUE = re.compile(r"\{glue(?::text|:any)?\}`([^`:]+)(?::([^`]*))?`")
VALIDITY = "studylib_validity"  # output metadata: the teachers a validity admonition is about


def _cells(nb) -> list:
    """The template's cells: papermill's injected-parameters cell dropped."""
    return [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]


def run_label(nb, path: Path) -> str:
    """A run's tab label: its `title` knob, else its model (the file's `<model>__<key>`)."""
    injected = nb.metadata.get("papermill", {}).get("parameters", {}).get("overrides", {})
    return str(injected.get("title") or path.stem.split("__")[0])


def _glued(nb) -> dict[str, str]:
    """The values a run glued, as text. A value glued without display (`show.glue`) has its
    MIME types behind scrapbook's prefix ("application/papermill.record/text/plain")."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            record = o.get("metadata", {}).get("scrapbook", {})
            if record.get("name"):
                text = f"{record.get('mime_prefix', '')}text/plain"
                out[record["name"]] = o.get("data", {}).get(text, "")
    return out


def _format(text: str, spec: str | None) -> str:
    if not spec:
        return text.strip("'\"")
    try:
        return format(ast.literal_eval(text), spec)
    except (ValueError, SyntaxError, TypeError):
        return text.strip("'\"")


def fill_glue(source: str, values: dict[str, str]) -> str:
    """`source` with every glue reference replaced by the run's value."""
    def one(m: re.Match) -> str:
        if m.group(1) not in values:
            raise StudyError(f"the narrative cites {m.group(1)!r}, which the run did not glue")
        return _format(values[m.group(1)], m.group(2))

    return GLUE.sub(one, source)


def validity(runs: Sequence) -> str:
    """The runs' validity admonitions (outputs marked `VALIDITY`), each once, in run order."""
    found = [o["data"]["text/markdown"] for nb in runs for cell in nb.cells
             for o in cell.get("outputs", []) if VALIDITY in o.get("metadata", {})]
    return "\n".join(dict.fromkeys(found))


def _under_title(cells: list, text: str) -> list:
    """`cells` with `text` as a markdown cell right under the page's `# title`."""
    import nbformat

    first = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), None)
    if not text or first is None or not cells[first].source.startswith("# "):
        return cells
    title, _, rest = cells[first].source.partition("\n")
    head = [nbformat.v4.new_markdown_cell(title), nbformat.v4.new_markdown_cell(text)]
    tail = [nbformat.v4.new_markdown_cell(rest.lstrip("\n"))] if rest.strip() else []
    return cells[:first] + head + tail + cells[first + 1:]


def _fence(kind: str, body: str) -> str:
    return f"````{kind}\n{body.rstrip()}\n````"


def _output_myst(out, assets: Path, name: str) -> str | None:
    """One notebook output as MyST; None for what a reader does not see (glue, stderr)."""
    kind = out.get("output_type")
    if kind == "stream":
        return None if out.get("name") == "stderr" else _fence("text", out.get("text", ""))
    if kind == "error":
        return _fence("{error}", f"{out.get('ename')}: {out.get('evalue')}")
    if out.get("metadata", {}).get("scrapbook"):
        return None
    data = out.get("data", {})
    if "text/markdown" in data:
        return data["text/markdown"]
    if "image/png" in data:
        import base64

        raw = base64.b64decode(data["image/png"])
        path = assets / f"{name}-{hashlib.sha256(raw).hexdigest()[:12]}.png"
        assets.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(raw)
        return f"```{{image}} /{path.relative_to(assets.parents[1]).as_posix()}\n```"
    if "text/html" in data:
        return _fence("{raw} html", data["text/html"])
    if "text/plain" in data:
        return _fence("text", data["text/plain"])
    return None


def _tabs(labels: Sequence[str], bodies: Sequence[str]) -> str:
    """One sphinx-design tab per run, synchronised across the page. The tabs' colon fences
    are longer than any in the bodies (a folded table is a `::::{dropdown}`), so that a
    body's own directive never closes its tab."""
    inner = max((len(m) for b in bodies for m in re.findall(r"^:{3,}", b, flags=re.M)),
                default=2)
    item, tabset = ":" * (inner + 1), ":" * (inner + 2)
    items = "".join(f"{item}{{tab-item}} {label}\n:sync: {_slug(label)}\n\n{body}\n{item}\n"
                    for label, body in zip(labels, bodies, strict=True))
    return f"{tabset}{{tab-set}}\n:sync-group: run\n\n{items}{tabset}\n"


# A cell that is one directive (an exercise's solution): its fence, its options, its body.
DIRECTIVE = re.compile(r"\A(?P<fence>`{3,}|:{3,})(?P<head>\{[\w:-]+\}[^\n]*\n(?::[\w-]+:[^\n]*\n)*)"
                       r"(?P<body>.*)\n(?P=fence)\s*\Z", flags=re.S)


def _glued_tabs(source: str, labels: Sequence[str], glued: Sequence[dict[str, str]]) -> str:
    """A narrative cell that cites glued numbers, once per run in tabs. A cell that is one
    directive keeps its frame once, with the tabs inside it (one solution, every run's
    numbers); a colon fence is made longer than the tabs' own."""
    framed = DIRECTIVE.match(source.strip())
    if not framed:
        return _tabs(labels, [fill_glue(source, g) for g in glued])
    tabs = _tabs(labels, [fill_glue(framed["body"], g) for g in glued])
    fence = framed["fence"]
    if fence[0] == ":":
        fence = ":" * max(len(fence), *map(len, re.findall(r"^:{3,}", tabs, flags=re.M))) + ":"
    return f"{fence}{framed['head']}\n{tabs}{fence}\n"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _same(outputs: Sequence[list]) -> bool:
    def visible(outs):
        return [o for o in outs if not o.get("metadata", {}).get("scrapbook")]

    first = visible(outputs[0])
    return all(visible(o) == first for o in outputs[1:])


def chapter_page(study: str, paths: Sequence[Path], out: Path) -> Path:
    """Write the study's page `out` (a notebook) from its executed runs `paths`."""
    import nbformat

    runs = [nbformat.read(p, as_version=4) for p in paths]
    cells = [_cells(nb) for nb in runs]
    if len({len(c) for c in cells}) > 1:
        raise StudyError(f"{study}: the runs {', '.join(p.name for p in paths)} have different "
                         "cells (executed from different versions of the notebook?): re-run them")
    labels = [run_label(nb, p) for nb, p in zip(runs, paths, strict=True)]
    labels = [f"{label} · {p.stem.partition('__')[2]}" if labels.count(label) > 1 else label
              for label, p in zip(labels, paths, strict=True)]  # e.g. a smoke run beside
    glued = [_glued(nb) for nb in runs]
    assets = out.parent / "_assets"
    page = []
    for i, base in enumerate(cells[0]):
        tags = base.metadata.get("tags", [])
        if "remove-cell" in tags:  # kept for its glued values; myst-nb leaves it out
            page.append(copy.deepcopy(base))
            continue
        if base.cell_type == "markdown":
            if len(runs) > 1 and GLUE.search(base.source):
                page.append(nbformat.v4.new_markdown_cell(_glued_tabs(
                    base.source, labels, glued)))
            else:
                page.append(copy.deepcopy(base))
            continue
        if base.cell_type != "code":
            continue
        outputs = [c[i].get("outputs", []) for c in cells]
        if len(runs) == 1 or _same(outputs):
            page.append(copy.deepcopy(base))
            continue
        if "remove-input" not in tags:
            code = copy.deepcopy(base)
            code.outputs, code.execution_count = [], None
            code.metadata["tags"] = [t for t in tags if t != "hide-output"] + (
                [] if "hide-input" in tags else ["hide-input"])
            page.append(code)
        bodies = []
        for r, outs in enumerate(outputs):
            parts = [_output_myst(o, assets, f"{study}-{_slug(labels[r])}-{i}") for o in outs]
            bodies.append("\n\n".join(p for p in parts if p) or "*(no output)*")
        page.append(nbformat.v4.new_markdown_cell(_tabs(labels, bodies)))
    nb = nbformat.v4.new_notebook(metadata=copy.deepcopy(runs[0].metadata))
    nb.metadata.pop("papermill", None)
    nb.cells = _under_title(page, validity(runs))
    tmp = out.with_name(f".{out.stem}.tmp.ipynb")
    nbformat.write(nb, tmp)
    tmp.replace(out)
    return out
