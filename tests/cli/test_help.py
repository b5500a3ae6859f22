"""Every command's --help renders: argparse formats help strings with %, so a bare % in a help
text printed argparse's internals instead (import-lmms did)."""

import pytest

from studylib import cli


def commands() -> list[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


@pytest.mark.parametrize("command", commands())
def test_help_renders(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert out.startswith(f"usage: studylib {command}") and "option_strings" not in out
