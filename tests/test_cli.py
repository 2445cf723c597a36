import unicodedata

import click
from click.testing import CliRunner

from perfxl import __version__
from perfxl.cli import cli


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def test_every_command_and_option_has_help():
    for path, command in _commands(cli):
        assert command.help, f"perfxl {' '.join(path)} has no help text"
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output
        for option in command.params:
            if isinstance(option, click.Option) and not option.hidden:
                assert option.help, f"perfxl {' '.join(path)} {option.opts[0]} has no help text"


def _columns(text: str) -> int:
    """How many terminal columns a text takes: a Chinese character (wide, or ambiguous such as →) two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WFA" else 1 for ch in text)


def test_help_lists_every_command_by_its_whole_summary_chinese_first():
    """`perfxl --help` once cut four summaries with "…" (click shortens what is longer than it counts)."""
    for group_path, group in [((), cli)] + [(p, c) for p, c in _commands(cli) if isinstance(c, click.Group)]:
        listing = CliRunner().invoke(cli, [*group_path, "--help"], terminal_width=80).output
        commands = listing.split("Commands:")[1]
        assert "..." not in commands and "…" not in commands, commands
        lines = commands.splitlines()
        for name, command in group.commands.items():
            summary = command.get_short_help_str()
            assert "\u4e00" <= summary[0] <= "\u9fff", f"{name}: {summary!r} does not start in Chinese"
            assert " (" in summary and summary.endswith(")."), f"{name}: {summary!r} has no English after it"
            line = next(line for line in lines if line.split()[:1] == [name])
            assert line.rstrip().endswith(summary), f"{name} is not listed by its whole summary: {line!r}"
            assert _columns(line) <= 80, f"{name}'s summary does not fit an 80-column terminal: {line!r}"


def test_version_and_templates():
    assert __version__ in CliRunner().invoke(cli, ["--version"]).output
    out = CliRunner().invoke(cli, ["templates"]).output
    assert "yancheng/project" in out and "盐城市市本级项目预算绩效目标表" in out


def test_describe_text_lists_labels():
    out = CliRunner().invoke(cli, ["describe", "yancheng/department", "--year", "2021"]).output
    assert "填表日期" in out and "f_fill_date" in out and "依据或说明" in out
