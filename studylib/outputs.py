"""Where studylib writes, and how it never loses data.

Three rules, one home:

- **Refuse before working.** `check_out_dir` / `check_out_file` turn an empty, odd or
  unwritable `--out` into one `StudyError` line before any model is loaded or trained.
- **Replace only our own.** Every directory studylib writes holds a marker file
  (`MARKER`). `--overwrite` replaces a non-empty directory only if it has that marker;
  any other directory (your home, the current directory, a dataset) is refused.
- **Replace atomically.** `atomic_dir` writes the new output into a hidden sibling,
  writes the marker last (so a sibling with a marker is complete), then swaps it with the
  old one in one `renameat2(RENAME_EXCHANGE)` call (Linux) and only then deletes the old
  one. A kill at any moment leaves `out` whole, old or new. Where the exchange is not
  available, the old one is renamed aside first; a kill between the two renames leaves
  `out` missing and the old one whole beside it, and the next write to `out` puts it back.
  Hidden siblings left by killed runs (their process is gone) are cleaned up by the next
  write to the same `out`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from studylib.errors import StudyError

MARKER = ".studylib-output"
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
_renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc >= 2.28


def check_out_dir(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """`out` as a directory studylib may write, else one StudyError line.

    Refused: an empty path, the current directory or one above it, a file, a symbolic link,
    a non-empty directory without `overwrite`, a non-empty directory studylib did not write
    (no marker) even with `overwrite`, and a place where nothing can be created.
    """
    path = _as_path(out, "--out")
    resolved = path.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise StudyError(f"--out {out} is the current directory or one above it: "
                         "give a new directory")
    if path.is_symlink():
        raise StudyError(f"--out {out} is a symbolic link: give the directory itself")
    if path.exists() and not path.is_dir():
        raise StudyError(f"--out {out} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise StudyError(f"{out} exists and is not empty (pass --overwrite to replace it)")
        if not is_ours(path):
            raise StudyError(f"{out} was not written by studylib (no {MARKER} file): "
                             "refusing to replace it; remove it yourself or choose another "
                             "--out")
    _check_creatable(path.parent)
    return path


def check_out_file(out: str | os.PathLike, what: str = "--out") -> Path:
    """`out` as a file studylib may (re)write, else one StudyError line."""
    path = _as_path(out, what)
    if path.is_dir():
        raise StudyError(f"{what} {out} is a directory, not a file")
    if path.exists() and not path.is_file():
        raise StudyError(f"{what} {out} is not a regular file")
    _check_creatable(path.parent)
    return path


def check_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """A directory studylib may create files in (a cache), else one StudyError line."""
    path = _as_path(path, what)
    if path.exists() and not path.is_dir():
        raise StudyError(f"{what} {path} exists and is not a directory")
    _check_creatable(path)
    return path


def is_ours(path: Path) -> bool:
    """Whether `path` is a directory studylib wrote (it holds the marker file)."""
    return (path / MARKER).is_file()


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, command: str = "studylib"):
    """Yield a hidden sibling of `out` to write into; on success it replaces `out`.

    Commands check `out` before their work (`check_out_dir`); this checks again, so that
    no caller, library ones included, can replace a directory studylib did not write. A
    failure or an interrupt removes the sibling and leaves `out` as it was; see the module
    docstring for kills.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(out)
    if out.is_dir() and any(out.iterdir()) and not is_ours(out):
        raise StudyError(f"{out} was not written by studylib (no {MARKER} file): refusing to "
                         "replace it")
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(out), dir=out.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({"written_by": f"studylib {command}"}) + "\n")
        if out.exists() or out.is_symlink():
            _swap(tmp, out)  # tmp now holds the old output
            shutil.rmtree(tmp)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a temp file in the same directory and rename: readers see old or new.

    An existing file keeps its mode; a new one gets the usual mode (0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- helpers ---------------------------------------------------------------------------------


def _as_path(value: str | os.PathLike, what: str) -> Path:
    text = os.fspath(value)
    if not str(text).strip():
        raise StudyError(f"{what} is empty (an unset shell variable?): give a path")
    if "\0" in str(text):
        raise StudyError(f"{what} contains a NUL byte: {text!r}")
    return Path(text).expanduser()


def _check_creatable(parent: Path) -> None:
    """Something can be created under `parent` (made if missing): probe its nearest
    existing ancestor with a temporary directory, removed at once. Root passes every
    permission check, so only a real attempt tells (read-only filesystems, /proc, ...)."""
    ancestor = parent
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise StudyError(f"cannot write under {parent}: {ancestor} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".studylib-probe-", dir=ancestor))
    except OSError as exc:
        raise StudyError(f"cannot write under {parent}: {exc.strerror or exc}") from None


def _prefix(out: Path) -> str:
    return f".{out.name}.studylib-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_leftovers(out: Path) -> None:
    """Remove hidden siblings of `out` left by killed runs; if `out` itself is missing
    (a kill between the two renames of the fallback), put the complete one back."""
    stem = f".{out.name}.studylib-"
    for left in sorted(p for p in out.parent.iterdir() if p.name.startswith(stem)):
        pid = left.name[len(stem):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)) or not left.is_dir():
            continue
        if not out.exists() and is_ours(left):
            left.rename(out)
            print(f"studylib: restored {out} from an interrupted replacement", file=sys.stderr)
        else:
            shutil.rmtree(left, ignore_errors=True)


def _swap(new: Path, old: Path) -> None:
    """Exchange two paths atomically (Linux renameat2); else rename the old one aside."""
    if _renameat2 is not None:
        rc = _renameat2(_AT_FDCWD, os.fsencode(new), _AT_FDCWD, os.fsencode(old),
                       _RENAME_EXCHANGE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), str(old))
    aside = Path(tempfile.mkdtemp(prefix=_prefix(old), dir=old.parent))
    aside.rmdir()
    old.rename(aside)  # a kill here: `old` is missing, `aside` whole; see _clean_leftovers
    new.rename(old)
    aside.rename(new)
