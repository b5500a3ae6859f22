"""`studylib pdf`: the executed book as one PDF (`make pdf`; see studylib.study.pdf)."""

from __future__ import annotations

import time
from pathlib import Path

from studylib.errors import StudyError
from studylib.outputs import check_out_file


def cmd_pdf(args) -> int:
    from studylib.study.pdf import build_pdf, chromium

    book = Path(args.book)
    if not (book / "_config.yml").is_file():
        raise StudyError(f"not a book directory (no _config.yml): {book}")
    out = Path(args.out) if args.out else None
    if out is not None:
        check_out_file(out, "PDF")
    chromium()  # missing Chromium stops here, before the build
    start = time.perf_counter()
    path = build_pdf(book, out)
    print(f"pdf: {path} ({path.stat().st_size / 1e6:.1f} MB, "
          f"{time.perf_counter() - start:.0f} s)")
    return 0


def add_command(sub) -> None:
    p = sub.add_parser("pdf", help="print the executed book to one PDF (run `studylib study` "
                                   "first)")
    p.add_argument("--book", default="book", help="book directory (default: book)")
    p.add_argument("--out", help="the PDF (default: <book>/_build/pdf/book.pdf)")
    p.set_defaults(func=cmd_pdf)
