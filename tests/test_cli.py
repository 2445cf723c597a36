import unicodedata

import click
import pytest
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


@pytest.fixture(scope="module")
def handed_out(tmp_path_factory):
    """A roster and the blank forms generated for it (with manifest.json), as serve wants them."""
    folder = tmp_path_factory.mktemp("handed-out")
    roster = folder / "名单.csv"
    roster.write_text("code,name,department\n001,甲单位,某部门\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["generate", "national/project", "--year", "2025", "--roster", str(roster),
                                      "-o", str(folder / "空白表")])
    assert result.exit_code == 0, result.output
    return folder


MISSING_PATHS = {
    "merge an input": ["merge", "{missing}", "-o", "{tmp}/汇总.xlsx"],
    "merge one of two inputs": ["merge", "{forms}", "{missing}.xlsx", "-o", "{tmp}/汇总.xlsx"],
    "validate a folder": ["validate", "{missing}"],
    "validate a file": ["validate", "{missing}.xlsx"],
    "inspect": ["inspect", "{missing}.xlsx"],
    "generate's roster": ["generate", "national/project", "--year", "2025", "--roster", "{missing}.csv",
                          "-o", "{tmp}/out"],
    "generate's ledger": ["generate", "national/selfeval", "--year", "2025", "--roster", "{roster}",
                          "--from", "{missing}.sqlite", "-o", "{tmp}/out"],
    "serve's forms": ["serve", "{tmp}/store", "--roster", "{roster}", "--forms", "{missing}"],
    "serve's roster": ["serve", "{tmp}/store", "--roster", "{missing}.csv", "--forms", "{forms}"],
    "serve's templates": ["serve", "{tmp}/store", "--roster", "{roster}", "--forms", "{forms}",
                          "--templates", "{missing}"],
    "merge's templates": ["merge", "{forms}", "-o", "{tmp}/汇总.xlsx", "--templates", "{missing}"],
    "validate's templates": ["validate", "{forms}", "--templates", "{missing}"],
    "merge's record": ["merge", "{forms}", "-o", "{tmp}/汇总.xlsx", "--issued", "{missing}.sqlite"],
    "template import": ["template", "import", "{missing}.xlsx", "-o", "{tmp}/模板"],
    "template check": ["template", "check", "{missing}"],
    "export": ["export", "--ledger", "{missing}.sqlite", "-o", "{tmp}/甲县.perfxl"],
}


@pytest.mark.parametrize("args", MISSING_PATHS.values(), ids=MISSING_PATHS.keys())
def test_a_wrong_path_is_named_in_chinese_with_exit_2(args, handed_out, tmp_path, monkeypatch):
    """A path that is not there once showed Python's "[Errno 2] No such file or directory"."""
    uvicorn = pytest.importorskip("uvicorn")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the portal started on a wrong path"))
    missing = tmp_path / "没有这个"
    values = {"missing": missing, "tmp": tmp_path, "roster": handed_out / "名单.csv", "forms": handed_out / "空白表"}
    result = CliRunner().invoke(cli, [a.format(**values) for a in args], env={"PERFXL_ADMIN_PASSWORD": "12345678"})
    assert result.exit_code == 2, result.output
    assert "找不到" in result.output or "不存在" in result.output, result.output
    assert str(missing) in result.output
    assert "Errno" not in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing is written when an input is missing"


def test_validate_says_an_unreadable_file_cannot_be_read_and_why(tmp_path):
    """validate once printed `坏.xlsx  [?  ] 无法读取` with the reason on a line below, among the columns
    of a form's problems."""
    bad = tmp_path / "坏.xlsx"
    bad.write_bytes(b"not a workbook at all")
    result = CliRunner().invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 1
    first = result.output.splitlines()[0]
    assert first.startswith(f"{bad}  无法读取：") and "不是 Excel 工作簿" in first and "[not-a-workbook]" in first
    assert "[?" not in result.output and "  错误 " not in result.output
    english = CliRunner().invoke(cli, ["validate", str(bad), "--lang", "en"]).output.splitlines()[0]
    assert english.startswith(f"{bad}  cannot read: ") and "not an Excel workbook" in english


def test_validate_names_what_it_knows_of_a_readable_form(tmp_path, handed_out):
    form = next((handed_out / "空白表").glob("*.xlsx"))
    first = CliRunner().invoke(cli, ["validate", str(form)]).output.splitlines()[0]
    assert first == f"{form}  [national/project 2025 甲单位] 有错误"


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs a named pipe")
def test_an_inbox_of_nothing_but_skipped_files_says_what_was_skipped_by_kind(tmp_path):
    """The answer named every skipped file a lock or hidden file, whatever it was (a pipe here)."""
    import os

    inbox = tmp_path / "收件箱"
    inbox.mkdir()
    (inbox / ".隐藏.xlsx").write_bytes(b"x")
    (inbox / "~$锁.xlsx").write_bytes(b"x")
    os.mkfifo(inbox / "管道.xlsx")
    result = CliRunner().invoke(cli, ["merge", str(inbox), "-o", str(tmp_path / "汇总.xlsx")])
    assert result.exit_code == 2
    assert "跳过 3 个文件" in result.output and "不是普通文件" in result.output and "隐藏文件 1 个" in result.output
