"""`studylib study`: execute the chapters over their params grids and build the book."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from studylib.cli import argtypes
from studylib.errors import StudyError
from studylib.outputs import atomic_write_text, check_out_file
from studylib.study import params_file
from studylib.study.book import build_book
from studylib.study.runner import DEFAULT_GLOB, Job, plan, resolve_files, run_jobs


def cmd_study(args) -> int:
    book = Path(args.book)
    if not (book / "_config.yml").is_file():
        raise StudyError(f"not a book directory (no _config.yml): {book}")
    sets = params_file.parse_sets(args.set or [])
    files = resolve_files(args.params)
    jobs = plan(files, args.profile, sets, book, args.results, args.workers, args.only or ())
    for table in sorted({str(j.params.results) for j in jobs}):
        check_out_file(table, "results table")
    from studylib.results import ResultsTable

    def mark_skipped(some: Sequence[Job]) -> None:
        for job in some:
            if ResultsTable(job.params.results).has(job.run_id) and job.out.is_file():
                job.status = "skipped"

    # Chapters that read other chapters' rows (05) run last, re-identified after the others.
    readers = [j for j in jobs if j.params.READS_RESULTS]
    mark_skipped([j for j in jobs if j not in readers])
    if not any(j.status == "pending" for j in jobs if j not in readers):
        mark_skipped(readers)  # nothing upstream changes: the readers' ids are final
    pending = [j for j in jobs if j.status == "pending"]
    print(f"{len(jobs)} runs ({args.profile} profile): {len(jobs) - len(pending)} already "
          f"recorded, {len(pending)} to execute with {args.workers} worker(s)", flush=True)
    for job in jobs:
        print(f"  {'skip' if job.status == 'skipped' else 'run '} {job.name}  "
              f"run_id {job.run_id}  threads {job.threads}")
    if args.check:
        return 0
    start = time.perf_counter()
    cell_dirs = sorted({Path(j.params.results).parent / "cells" for j in jobs})

    def cells_stored() -> int:
        return sum(len(list(d.glob("*.json.gz"))) for d in cell_dirs if d.is_dir())

    cells_before = cells_stored()
    run_jobs([j for j in jobs if j not in readers], args.workers, Path.cwd(), args.timeout)
    for job in readers:
        if job.status == "pending":
            job.run_id = job.params.run_id()
    mark_skipped([j for j in readers if j.status == "pending"])
    run_jobs(readers, args.workers, Path.cwd(), args.timeout)
    pending = [j for j in jobs if j.status != "skipped"]
    failed = [j for j in jobs if j.status == "failed"]
    done = [j for j in jobs if j.status == "done"]
    cells_after = cells_stored()
    print(f"executed {len(done)}, skipped {len(jobs) - len(pending)}, failed {len(failed)} "
          f"in {time.perf_counter() - start:.1f} s; grid cells: {cells_after - cells_before} "
          f"computed, {cells_after} stored in {', '.join(map(str, cell_dirs))}", flush=True)
    summary = {"profile": args.profile, "workers": args.workers,
               "wall_s": round(time.perf_counter() - start, 2),
               "cells_computed": cells_after - cells_before, "cells_stored": cells_after,
               "runs": [{"run": j.name, "run_id": j.run_id, "status": j.status,
                         "wall_s": round(j.wall_s, 2), "threads": j.threads,
                         "message": j.message} for j in jobs]}
    atomic_write_text(book / "runs" / "_last_study.json", json.dumps(summary, indent=2) + "\n")
    for job in failed:
        print(f"studylib: run {job.name} failed: {job.message}", file=sys.stderr)
    status = 1 if failed else 0
    if not args.no_build:
        tables = [j.params.results for j in jobs]
        if build_book(book, tables) != 0:
            print("studylib: the book build failed (warnings are errors)", file=sys.stderr)
            status = 1
    return status


def add_command(sub) -> None:

    p = sub.add_parser("study", help="execute the study notebooks from params files, then "
                                     "build the book")
    p.add_argument("params", nargs="*", help="params files or study names (default: "
                                             f"{DEFAULT_GLOB})")
    p.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                   help="override a knob in every run that has it (YAML value: "
                        "ratios=[0.3,0.5])")
    p.add_argument("--only", nargs="+", metavar="KEY",
                   help="run only the params entries with these keys (their own, before "
                        "--set), e.g. --only ratio30")
    p.add_argument("--profile", choices=params_file.PROFILES, default="default",
                   help="smoke: minutes, for CI; default: what `make book` runs; full: the paper's whole grid")
    p.add_argument("--no-build", action="store_true", help="execute runs, skip the book")
    p.add_argument("--workers", type=argtypes.positive_int, default=1,
                   help="parallel kernels; each gets threads // workers torch threads")
    p.add_argument("--book", default="book", help="book directory (default: book)")
    p.add_argument("--results", help="results table for every run (default: from params)")
    p.add_argument("--timeout", type=argtypes.positive_int, help="per-cell execution timeout (s)")
    p.add_argument("--check", action="store_true", help="validate and list the runs only")
    p.set_defaults(func=cmd_study)
