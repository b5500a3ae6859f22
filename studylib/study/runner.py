"""`studylib study`: execute the study notebooks for every params entry, then build the book.

For each run of each `params/<study>.yaml` (a run is `{**defaults, **run, **--set}`):

1. validate it (`studylib.study.params_file`): a bad key stops everything before any work starts;
2. skip it when its `run_id` is in the results table *and* its executed notebook exists;
3. execute the template with papermill in a fresh kernel into a temp file, renamed to
   `book/runs/<study>/<model>__<key>.ipynb` only on success; what the run changes from the
   params' defaults is injected as the notebook's `overrides`. The notebook records its rows
   atomically at its end, so a kill at any moment leaves either a whole run or nothing, and
   rerunning completes only what is missing. A failed run is renamed `*.failed.ipynb`,
   reported with that path, and does not stop the other runs;
4. build the book (`studylib.study.book`: `jupyter-book build -W`) with one chapter per
   executed notebook and a provenance page computed from the results table.

Parallel workers (`--workers N`) each run one kernel with `threads // N` torch threads.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from studylib import models
from studylib.errors import StudyError
from studylib.results import ResultsTable
from studylib.study import params as P
from studylib.study import params_file

DEFAULT_GLOB = "params/[0-9][0-9]_*.yaml"


@dataclasses.dataclass
class Job:
    study: str
    notebook: Path
    params: P.StudyParams
    run_id: str
    out: Path
    threads: int
    status: str = "pending"  # pending | skipped | done | failed
    wall_s: float = 0.0
    message: str = ""

    @property
    def name(self) -> str:
        return f"{self.study}/{self.out.stem}"

    @property
    def failed_path(self) -> Path:
        return self.out.with_name(self.out.stem + ".failed.ipynb")

    @property
    def log_path(self) -> Path:
        return self.out.with_name(self.out.stem + ".log")


def resolve_files(specs: Sequence[str]) -> list[Path]:
    """Params files from paths or study names (`00_testbed`); none given: all studies."""
    if not specs:
        files = sorted(Path().glob(DEFAULT_GLOB))
        if not files:
            raise StudyError(f"no params files match {DEFAULT_GLOB} (run from the repository root)")
        return files
    out = []
    for spec in specs:
        path = Path(spec)
        if not path.exists() and not spec.endswith((".yaml", ".yml")):
            path = Path("params") / f"{spec}.yaml"
        if not path.is_file():
            raise StudyError(f"params file not found: {spec}")
        out.append(path)
    return out


def plan(files: Sequence[Path], profile: str, sets: dict[str, Any], book: Path,
         results: str | None, workers: int, only: Sequence[str] = ()) -> list[Job]:
    """Validate every file first (all-or-nothing), then list the jobs with their outputs;
    with `only`, the runs whose own key (before `sets`) is one of them."""
    known = {f.name for cls in P.STUDIES.values() for f in dataclasses.fields(cls)}
    unknown = [k for k in sets if k not in known]
    if unknown:
        raise StudyError(f"--set: unknown key {unknown[0]!r}; valid keys: {', '.join(sorted(known))}")
    overrides = dict(sets)
    if results:
        overrides["results"] = results
    overrides["figures"] = str(book / "figures")
    jobs: list[Job] = []
    seen: dict[str, str] = {}
    for path in files:
        study = params_file.load_study(path, profile=profile, overrides=overrides,
                                       strict_overrides=False, only=only)
        for p in study.runs:
            threads = p.threads if "threads" in sets or workers == 1 else max(1, p.threads // workers)
            p = dataclasses.replace(p, threads=threads)
            out = book / "runs" / study.study / f"{p.output_name()}.ipynb"
            check_checkpoints(p, f"{path}: run {study.study}/{p.output_name()}")
            rid = p.run_id()
            if rid in seen:
                raise StudyError(f"{path}: run {p.output_name()} has the same configuration as "
                                 f"{seen[rid]} (run_id {rid})")
            seen[rid] = f"{study.study}/{p.output_name()}"
            jobs.append(Job(study.study, study.notebook, p, rid, out, threads))
    if only and not jobs:
        raise StudyError(f"--only {' '.join(only)}: no run of {', '.join(map(str, files))} "
                         f"has that key (profile {profile})")
    used = {f.name for job in jobs for f in dataclasses.fields(job.params)}
    for key in sets:  # a knob of another study: not an error, but likely not what was meant
        if key not in used:
            print(f"studylib: warning: --set {key} is used by no run of the selected "
                  "studies; ignored", file=sys.stderr)
    return jobs


def check_checkpoints(params: P.StudyParams, where: str) -> None:
    """Every local checkpoint a run loads must be one (`models.check_local`: a directory
    with a config and weights); hub ids pass through. One line, before any run starts."""
    for ckpt in params.checkpoints:
        if params.checkpoint and not models.is_local(params.checkpoint):
            continue
        try:
            models.check_local(ckpt)
        except StudyError as exc:
            hint = " (train it with `make teachers`)" if not params.checkpoint else ""
            raise StudyError(f"{where}: {exc}{hint}") from None


def execute(job: Job, cwd: Path, timeout: int | None = None) -> Job:
    """Run one notebook with papermill in its own process and kernel (temp file, then rename)."""
    job.out.parent.mkdir(parents=True, exist_ok=True)
    for stale in job.out.parent.glob(f".{job.out.stem}.*.tmp.ipynb"):
        stale.unlink(missing_ok=True)
    tmp = job.out.with_name(f".{job.out.stem}.{os.getpid()}.tmp.ipynb")
    env = dict(os.environ)
    for var in ("STUDYLIB_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(job.threads)
    env.setdefault("PYTHONHASHSEED", "0")
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        # the notebook's `parameters` cell is `overrides = {}`: papermill replaces it with
        # what this run changes from the defaults, and the notebook validates them again
        yaml.safe_dump({"overrides": params_file.non_defaults(job.params)}, f)
        injected = f.name
    cmd = [sys.executable, "-m", "papermill", str(job.notebook), str(tmp), "-f", injected,
           "-k", "python3", "--cwd", str(cwd), "--no-progress-bar"]
    if timeout:
        cmd += ["--execution-timeout", str(timeout)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    finally:
        os.unlink(injected)
    job.wall_s = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    recorded = ResultsTable(job.params.results).has(job.run_id)
    if proc.returncode == 0 and recorded:
        os.replace(tmp, job.out)
        job.failed_path.unlink(missing_ok=True)
        job.log_path.unlink(missing_ok=True)
        job.status = "done"
        return job
    job.status = "failed"
    job.log_path.write_text(log)
    if tmp.exists():
        os.replace(tmp, job.failed_path)
        where = job.failed_path
    else:
        where = job.log_path
    if proc.returncode == 0:
        reason = f"notebook finished but run {job.run_id} is not in {job.params.results}"
    else:
        reason = _last_error(log)
    job.message = f"{reason} (see {where})"
    return job


def _last_error(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Exception" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else "papermill failed without output"


def run_jobs(jobs: Sequence[Job], workers: int, cwd: Path, timeout: int | None = None) -> None:
    todo = [j for j in jobs if j.status == "pending"]
    if not todo:
        return
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(execute, j, cwd, timeout): j for j in todo}
        for fut in cf.as_completed(futures):
            job = futures[fut]
            try:
                fut.result()
            except Exception as exc:  # a runner bug must not hide the other runs' results
                job.status, job.message = "failed", f"{type(exc).__name__}: {exc}"
            flag = "ok    " if job.status == "done" else "FAILED"
            print(f"[{flag}] {job.name}  {job.wall_s:6.1f} s  {job.message}", flush=True)
