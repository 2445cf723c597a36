import click
from click.testing import CliRunner

from perfxl import __version__
from perfxl.cli import cli


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def test_every_command_has_help():
    for path, command in _commands(cli):
        assert command.help, f"perfxl {' '.join(path)} has no help text"
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_version_and_templates():
    assert __version__ in CliRunner().invoke(cli, ["--version"]).output
    out = CliRunner().invoke(cli, ["templates"]).output
    assert "yancheng/project" in out and "盐城市市本级项目预算绩效目标表" in out


def test_describe_text_lists_labels():
    out = CliRunner().invoke(cli, ["describe", "yancheng/department", "--year", "2021"]).output
    assert "填表日期" in out and "f_fill_date" in out and "依据或说明" in out
