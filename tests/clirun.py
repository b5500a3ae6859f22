"""`studylib` in-process for the command-line tests: (exit code, stdout, stderr)."""

from __future__ import annotations

from studylib import cli


def run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors exit from parse_args
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
