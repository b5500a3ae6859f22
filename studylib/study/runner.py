"""`studylib study`: execute the study notebooks for every params entry, then build the book.

For each run of each `params/<study>.yaml` (a run is `{**defaults, **run, **--set}`):

1. validate it (`studylib.study.params`): a bad key stops everything before any work starts;
2. skip it when its `run_id` is in the results table *and* its executed notebook exists;
3. execute the template with papermill in a fresh kernel into a temp file, renamed to
   `book/runs/<study>/<model>__<key>.ipynb` only on success. The notebook records its rows
   atomically at its end, so a kill at any moment leaves either a whole run or nothing, and
   rerunning completes only what is missing. A failed run is renamed `*.failed.ipynb`,
   reported with that path, and does not stop the other runs;
4. build the book (`jupyter-book build -W`, `execute_notebooks: off`) with one chapter per
   executed notebook and a provenance page computed from the results table.

Parallel workers (`--workers N`) each run one kernel with `threads // N` torch threads.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from studylib.errors import StudyError
from studylib.study import params as P

DEFAULT_GLOB = "params/[0-9][0-9]_*.yaml"
STUDY_TITLES = {
    "00_testbed": "00 · The testbed",
    "01_pruning_comparison": "01 · Layerwise vs widthwise pruning",
    "02_sft_recovery": "02 · Recovery by finetuning",
    "03_kd_ablation": "03 · Distillation: which loss recovers best",
    "04_data_efficiency": "04 · How much data",
    "05_best_practices": "05 · Best practices: the findings, replicated?",
    "06_generalization": "06 · Generalization: a third architecture (InternVL)",
    "07_quantization": "07 · int8 on top of pruning",
}


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
         results: str | None, workers: int) -> list[Job]:
    """Validate every file first (all-or-nothing), then list the jobs with their outputs."""
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
        study = P.load_study(path, profile=profile, overrides=overrides, strict_overrides=False)
        for p in study.runs:
            threads = p.threads if "threads" in sets or workers == 1 else max(1, p.threads // workers)
            p = dataclasses.replace(p, threads=threads)
            out = book / "runs" / study.study / f"{p.output_name()}.ipynb"
            rid = p.run_id()
            if rid in seen:
                raise StudyError(f"{path}: run {p.output_name()} has the same configuration as "
                                 f"{seen[rid]} (run_id {rid})")
            seen[rid] = f"{study.study}/{p.output_name()}"
            jobs.append(Job(study.study, study.notebook, p, rid, out, threads))
    used = {f.name for job in jobs for f in dataclasses.fields(job.params)}
    for key in sets:  # a knob of another study: not an error, but likely not what was meant
        if key not in used:
            print(f"studylib: warning: --set {key} is used by no run of the selected "
                  "studies; ignored", file=sys.stderr)
    return jobs


def _param_dict(p: P.StudyParams) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(p).items()}


def execute(job: Job, cwd: Path, timeout: int | None = None) -> Job:
    """Run one notebook with papermill in its own process and kernel (temp file, then rename)."""
    from studylib import models
    from studylib.results import ResultsTable

    job.out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = job.params.checkpoint_dir
    local = not job.params.checkpoint or models.is_local(job.params.checkpoint)
    if local and not ckpt.is_dir():  # fail fast, before a kernel starts (hub ids pass through)
        hint = " (train it with `make teachers`)" if not job.params.checkpoint else ""
        job.status, job.message = "failed", f"checkpoint not found: {ckpt}{hint}"
        return job
    for stale in job.out.parent.glob(f".{job.out.stem}.*.tmp.ipynb"):
        stale.unlink(missing_ok=True)
    tmp = job.out.with_name(f".{job.out.stem}.{os.getpid()}.tmp.ipynb")
    env = dict(os.environ)
    for var in ("STUDYLIB_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(job.threads)
    env.setdefault("PYTHONHASHSEED", "0")
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(_param_dict(job.params), f)
        params_file = f.name
    cmd = [sys.executable, "-m", "papermill", str(job.notebook), str(tmp), "-f", params_file,
           "-k", "python3", "--cwd", str(cwd), "--no-progress-bar"]
    if timeout:
        cmd += ["--execution-timeout", str(timeout)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    finally:
        os.unlink(params_file)
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


# --- the book -----------------------------------------------------------------------------


def executed_notebooks(book: Path) -> dict[str, list[Path]]:
    """Executed runs by study (failed and temp files excluded), in study order."""
    out: dict[str, list[Path]] = {}
    runs = book / "runs"
    if not runs.is_dir():
        return out
    for study_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        nbs = sorted(p for p in study_dir.glob("*.ipynb")
                     if not p.name.startswith(".") and not p.name.endswith(".failed.ipynb"))
        if nbs:
            out[study_dir.name] = nbs
    return out


def write_toc(book: Path) -> Path:
    """book/_toc.yml's skeleton plus one part per study, one chapter per executed run."""
    skeleton = yaml.safe_load((book / "_toc.yml").read_text())
    parts = []
    for study, nbs in executed_notebooks(book).items():
        chapters = [{"file": str(nb.relative_to(book).with_suffix("")),
                     "title": nb.stem.replace("__", " · ")} for nb in nbs]
        parts.append({"caption": STUDY_TITLES.get(study, study), "chapters": chapters})
    about = skeleton.get("parts", [])
    toc = {k: v for k, v in skeleton.items() if k != "parts"}
    toc["parts"] = parts + about
    path = book / "runs" / "_toc.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Generated by `studylib study` from book/_toc.yml and book/runs/.\n"
                    + yaml.safe_dump(toc, sort_keys=False))
    return path


def _md_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return ""
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(cell(r.get(c)) for c in columns) + " |\n"
                          for r in rows)


def write_provenance(book: Path, tables: Sequence[str]) -> Path:
    """book/runs/_provenance.md: the build's versions and machine, and per run its git sha,
    versions, threads and wall time, all read from the results table(s)."""
    import pandas as pd

    from studylib.results import ResultsTable, git_sha

    frames = [ResultsTable(t).frame() for t in dict.fromkeys(tables)]
    df = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(
        not f.empty for f in frames) else pd.DataFrame()
    executed = {(study, nb.stem) for study, nbs in executed_notebooks(book).items() for nb in nbs}
    lines = ["## This build\n",
             _md_table([{"built": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                         "git sha": git_sha() + ("+dirty" if P.git_dirty() else ""),
                         "python": platform.python_version(),
                         "machine": f"{platform.system()} {platform.machine()}, "
                                    f"{os.cpu_count()} cpus",
                         **_versions()}],
                       ["built", "git sha", "python", "machine", *_versions()]),
             "\n## Runs in this book\n"]
    if df.empty:
        lines.append("No runs are recorded yet.\n")
    else:
        runs = []
        for rid, g in df.groupby("run_id", sort=False):
            first = g.iloc[0].to_dict()
            name = f"{first.get('model')}__{first.get('key')}"
            if (first.get("study"), name) not in executed:  # chapters share run names
                continue
            runs.append({"study": first.get("study"), "run": name, "run_id": rid,
                         "git sha": f"{first.get('git_sha')}"
                                    + ("+dirty" if first.get("git_dirty") is True else ""),
                         "recorded": first.get("timestamp"),
                         "wall (s)": first.get("wall_s"), "threads": first.get("threads"),
                         "torch": first.get("torch"), "transformers": first.get("transformers"),
                         "machine": first.get("machine"), "GPU": first.get("cuda"),
                         "rows": len(g)})
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for r in sorted(runs, key=lambda r: str(r["recorded"])):  # the newest run per chapter
            latest[(str(r["study"]), str(r["run"]))] = r
        runs = [latest[k] for k in sorted(latest)]
        if runs:
            lines.append(_md_table(runs, list(runs[0])))
            total = sum(float(r["wall (s)"] or 0) for r in runs)
            lines.append(f"\nTotal wall time of these runs: {total:.0f} s. Tables: "
                         + ", ".join(f"`{t}`" for t in dict.fromkeys(tables)) + ".\n")
        else:
            lines.append("No executed notebook in this book matches a recorded run.\n")
    path = book / "runs" / "_provenance.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "papermill", "jupyter-book", "myst-nb"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    return out


def build_book(book: Path, tables: Sequence[str]) -> int:
    """`jupyter-book build -W` with the generated TOC; returns its exit status."""
    if not executed_notebooks(book):
        raise StudyError(f"no executed notebooks under {book / 'runs'}: nothing to build")
    toc = write_toc(book)
    write_provenance(book, tables)
    jb = Path(sys.executable).with_name("jupyter-book")
    # absolute paths: jupyter-book resolves a relative --toc against the book directory
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(book.resolve()),
           "--toc", str(toc.resolve()),
           "-W", "--keep-going", "--all"]
    print("building the book:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        print(tail, file=sys.stderr)
    else:
        print(f"book: {book / '_build' / 'html' / 'index.html'}")
    return proc.returncode
