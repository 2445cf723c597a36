"""Command line: the only module that knows click. Each command parses options, calls the library and
turns perfxl errors into a message and a non-zero exit (2 for usage errors), never a traceback."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import click  # noqa: TID251 - this is the CLI module

from . import __version__
from .errors import PerfxlError, missing_input, os_reason


def _templates_folder(ctx, param, value: Path | None) -> Path | None:
    """A --templates folder that is not there is said at once: otherwise every file would be refused later
    as a form of an unknown template."""
    if value is not None and not value.is_dir():
        raise PerfxlError(f"模板目录不存在 (templates folder not found): {value}")
    return value


TEMPLATES_OPTION = click.option("--templates", "templates_dir", type=click.Path(file_okay=False, path_type=Path),
                                default=None, callback=_templates_folder,
                                help="使用自己的模板目录 (a folder of template specs).")
HISTORY_OPTION = click.option(
    "--history", "history", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
    help="往年的报送台账或导出文件（申报、调整、自评，可重复）：与上年对比，不作为本次汇总的输入 "
         "(earlier years' ledgers: targets compared with their past).")
LIBRARY_OPTION = click.option("--library", "library", type=click.Path(dir_okay=False, path_type=Path), default=None,
                              help="指标库 .xlsx（perfxl library build 生成、财政局编辑后）(an indicator library).")
ISSUED_OPTION = click.option("--issued", "issued", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
                             help="自评表/监控表的下发记录（生成时写在表格目录中的 下发记录.sqlite，可重复）；在生成这些表的"
                                  "电脑上不必指定 (the record of what follow-up forms were issued with).")


class _Year(click.ParamType):
    """A budget year: four digits, 1990–2100. Year 0 or 99999 is a typo, not "every year"."""

    name = "year"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            year = value
        else:
            text = str(value).strip()
            if not text.isdigit():
                self.fail(f"年度应为四位数字，例如 2025 (a year such as 2025), 而不是 {text!r}", param, ctx)
            year = int(text)
        if not 1990 <= year <= 2100:
            self.fail(f"年度 {year} 不在 1990–2100 之间 (year out of range)", param, ctx)
        return year


YEAR = _Year()


def _summary(command: click.Command) -> str:
    """A command's one-line summary: the first paragraph of its help, whole."""
    import inspect

    paragraph = inspect.cleandoc(command.help or "").split("\n\n")[0]
    return " ".join(paragraph.split())


class _Command(click.Command):
    """A command listed in `perfxl --help` by its summary, whole: click would cut it at a count of
    characters (a Chinese character takes two columns) and end it with "…", so summaries are kept short
    enough to fit instead (tests/test_cli.py measures them)."""

    def get_short_help_str(self, limit: int = 45) -> str:
        return _summary(self)


class _Group(click.Group):
    command_class = _Command
    group_class = type  # a subgroup is a _Group too: its commands listed whole, its errors said the same way

    def get_short_help_str(self, limit: int = 45) -> str:
        return _summary(self)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PerfxlError as exc:
            click.echo(f"错误 (error): {exc}", err=True)
            ctx.exit(2)
        except BrokenPipeError:  # output piped into `head` and the like: nothing to say
            ctx.exit(0)
        except FileNotFoundError as exc:  # a path named that is not there, wherever it was found missing
            where = f": {exc.filename}" if exc.filename else ""
            click.echo(f"错误 (error): 找不到文件或文件夹 (no such file or folder){where}", err=True)
            ctx.exit(2)
        except OSError as exc:  # the environment: disk full, read-only, name too long, permission
            where = exc.filename or ""
            click.echo(f"错误 (error): 无法读写文件 {where}：{os_reason(exc)}", err=True)
            ctx.exit(2)
        except sqlite3.Error as exc:
            click.echo(f"错误 (error): 报送台账出错 (ledger error): {exc}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("已中断 (interrupted)", err=True)
            ctx.exit(130)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="perfxl")
def cli():
    """perfxl：预算绩效目标申报表的生成、校验与汇总 (generate blank forms, validate returned ones, merge
    them)."""


@cli.command("templates")
@TEMPLATES_OPTION
@click.option("--json", "as_json", is_flag=True, help="机器可读输出 (JSON).")
def templates_cmd(templates_dir, as_json):
    """列出可用模板 (list the available templates)."""
    from .spec import list_templates, template_summary

    rows = [template_summary(name, templates_dir) for name in list_templates(templates_dir)]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    for row in rows:
        multi = "多项目" if row["multi_project"] else "单表"
        click.echo(f"{row['template']:<24} v{row['version']:<9} {row['money_unit']:<3} {multi:<4} {row['title']}")


@cli.group("template")
def template_group():
    """导入 Excel 表样、检查模板目录 (forms designed in Excel)."""


@template_group.command("import")
@click.argument("designed", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="模板目录：之后用 --templates 指向它 (the templates folder to write into).")
def template_import(designed, outdir):
    """把在 Excel 中设计的表样导入为模板 (import a form designed in Excel).

    表样工作簿含「字段」「表格」「规则」「设置」工作表；DESIGNED 是它的路径。"""
    from .designed.importer import import_design
    from .spec import load_spec

    result = import_design(designed, outdir)
    click.echo(f"已导入模板 {result.template}：字段 {result.fields} 个，表格 {result.tables} 个，规则 {result.rules} 条")
    click.echo(f"  {result.yaml_path}")
    click.echo(f"  {result.workbook_path}")
    for line in _cannot_do(load_spec(result.template, templates_dir=outdir)):
        click.echo(f"  注意：{line}")
    click.echo(f"下一步 (next): perfxl describe {result.template} --templates {outdir}")


@template_group.command("check")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--year", type=YEAR, default=None, help="用哪个年度渲染模板 (the year to render with).")
def template_check(folder, year):
    """检查模板目录中的每个模板 (lint a templates folder).

    能否加载、能否生成表单，并列出其字段和表格；FOLDER 是模板目录。"""
    from .generator import build_workbook
    from .spec import describe as describe_spec
    from .spec import load_spec, templates_in

    if not folder.is_dir():
        raise PerfxlError(f"模板目录不存在 (templates folder not found): {folder}")
    names = templates_in(folder)
    if not names:
        raise PerfxlError(f"{folder} 中没有模板（*.yaml）")
    failed = 0
    for name in names:
        try:
            spec = load_spec(name, year or _default_year(), templates_dir=folder)
            build_workbook(spec, {"code": "000000", "name": "示例单位", "department": "示例部门"})
        except PerfxlError as exc:
            failed += 1
            click.echo(f"✗ {name}: {exc}")
            continue
        info = describe_spec(spec)
        kind = "Excel 表样" if spec.designed else "YAML"
        click.echo(f"✓ {name} v{info['version']}（{kind}）{info['title']}：字段 {len(info['fields'])}，"
                   f"表格 {len(info['tables'])}，规则 {len(info['rules'])}")
        for t in info["tables"]:
            click.echo(f"    {t['name']}  {t['label']}（{t['rows']} 行）: {' | '.join(c['label'] for c in t['columns'])}")
        for line in _cannot_do(spec):
            click.echo(f"    注意：{line}")
    if failed:
        click.echo(f"{failed} 个模板有问题，共 {len(names)} 个", err=True)
        sys.exit(2)
    click.echo(f"全部 {len(names)} 个模板通过检查")


def _cannot_do(spec) -> list[str]:
    """What forms of this template cannot take part in, said where the template is imported and checked."""
    if not spec.round.declaration or spec.indicator_table() is not None:
        return []
    return ["没有绩效指标表（没有写了指标层级 indicator 的表格）：汇总时「指标明细」没有它的行，「目标审核」不审核指标，"
            "只按必填项、项目名称和错误评分；也不能据它的申报生成自评表、监控表 (no indicator table: no indicator "
            "rows, no indicator review, no follow-up forms)"]


@cli.command()
@click.argument("template")
@click.option("--year", type=YEAR, default=None, help="年度 (budget year); default: next year.")
@click.option("--region", default=None, help="地区 (region parameter of the template).")
@click.option("--json", "as_json", is_flag=True, help="JSON 输出 (fields, tables, defined names).")
@TEMPLATES_OPTION
def describe(template, year, region, as_json, templates_dir):
    """说明模板包含的字段、表格和定义名称 (what a form contains)."""
    from .spec import describe as describe_spec
    from .spec import load_spec

    spec = load_spec(template, year or _default_year(), region, templates_dir=templates_dir)
    info = describe_spec(spec)
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=1))
        return
    click.echo(f"{info['title']}  ({info['template']} v{info['version']}, 金额单位 {info['money_unit']}, "
               f"{'每个项目一个工作表' if info['multi_project'] else '单个工作表'})")
    click.echo("字段 (fields):")
    for f in info["fields"]:
        star = "*" if f["required"] else " "
        where = f" [{f['section']}·{f['column']}]" if f.get("column") else ""
        click.echo(f"  {star} {f['label']}{where}  <{f['type']}>  {f['name']}")
    click.echo("表格 (tables):")
    for t in info["tables"]:
        cols = " | ".join(c["label"] for c in t["columns"])
        click.echo(f"    {t['label']}  {t['name']}  ({t['rows']} 行): {cols}")


@cli.command()
@click.argument("template")
@click.option("--year", type=YEAR, required=True, help="年度 (budget year).")
@click.option("--roster", type=click.Path(path_type=Path), required=True, help="单位名单 CSV/XLSX (code,name,department).")
@click.option("-o", "--output", "outdir", type=click.Path(path_type=Path), default=Path("outputs"),
              show_default=True, help="输出目录.")
@click.option("--region", default=None, help="地区 (overrides the roster's region column).")
@click.option("--projects", type=click.IntRange(1, 200), default=None,
              help="每个单位的项目工作表数 (project sheets per workbook).")
@click.option("--password", default=None, help="工作表保护密码 (default: protection without a password).")
@click.option("--rows", type=click.IntRange(1, 2000), default=None,
              help="指标表空白行数 (blank indicator rows; default: the template's).")
@click.option("--from", "ledger", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="申报汇总的报送台账 (.sqlite)：据此生成自评表/监控表 (follow-up forms from a declaration ledger).")
@click.option("--portal-url", default=None, callback=lambda ctx, param, value: _portal_url(value),
              help="报送网页的地址，印在分发清单上，例如 http://192.168.1.10:8000/ (the portal's address).")
@click.option("--deadline", default=None, callback=lambda ctx, param, value: _deadline(value),
              help="报送截止日期 YYYY-MM-DD，印在分发清单上 (the deadline printed on the handout).")
@HISTORY_OPTION
@LIBRARY_OPTION
@TEMPLATES_OPTION
@ISSUED_OPTION
def generate(template, year, roster, outdir, region, projects, password, rows, ledger, portal_url, deadline,
             history, library, templates_dir, issued):
    """为名单中的每个单位生成一份表 (one form per roster unit).

    申报表生成空白表；自评表、监控表等后续表用 --from 指定申报汇总的报送台账，表中预填所申报的指标
    (follow-up forms are made from a declaration ledger)."""
    import time

    from .handout import generate_round
    from .roster import read_roster
    from .spec import load_spec

    spec = load_spec(template, year, region, blank_rows=rows, templates_dir=templates_dir)  # fail fast
    if spec.round.followup and ledger is None:
        raise click.UsageError(f"{template} 是后续表（{spec.title}），请用 --from 指定申报汇总的报送台账 (.sqlite)")
    units = read_roster(roster)
    started = time.perf_counter()
    with _progress(len(units), "生成") as bar:
        handout = generate_round(template, year, units, outdir, ledger=ledger, region=region, projects=projects,
                                 password=password, templates_dir=templates_dir, progress=bar.update,
                                 blank_rows=rows, avoid={roster}, portal_url=portal_url, deadline=deadline,
                                 history=list(history), library=library, issued=tuple(issued))
    took = time.perf_counter() - started
    for note in handout.notes:
        click.echo(f"注意：{note}")
    what = spec.title if spec.round.followup else "空白表"
    click.echo(f"已生成 {len(handout.forms)} 份{what} → {outdir} ({took:.1f} s); 清单 {outdir / 'manifest.json'}")
    click.echo(f"访问码（perfxl serve 报送网页用）→ {outdir / '分发清单.xlsx'}：请单独交给各单位"
               + ("" if spec.round.followup else "，不要连同空白表一起下发"))
    _say_what_the_handout_says(outdir)
    missing = handout.without_declaration
    if missing:
        names = "、".join(f"{u.code} {u.name}" for u in missing[:20])
        more = f" 等 {len(missing)} 个" if len(missing) > 20 else ""
        click.echo(f"  {len(missing)} 个单位在台账中没有已汇总的、含绩效指标的申报，未生成（无申报，未下发）：{names}{more}")


def _portal_url(value: str | None) -> str | None:
    from .manifest import check_portal_url

    if value is None:
        return None
    try:
        return check_portal_url(value)
    except PerfxlError as exc:
        raise click.BadParameter(str(exc)) from None


def _deadline(value: str | None) -> str | None:
    from datetime import date

    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise click.BadParameter(f"截止日期应写作 YYYY-MM-DD，例如 2025-03-31，而不是 {value!r} "
                                 f"(a date such as 2025-03-31)") from None


def _say_what_the_handout_says(outdir: Path) -> None:
    """The portal's address and the deadline as the printed handout gives them, or how to add them."""
    from .manifest import handout_lines, read_manifest

    manifest = read_manifest(outdir)
    for line in handout_lines(manifest)[1:3]:
        click.echo(f"  分发清单上：{line}")
    if not manifest.portal_url or not manifest.deadline:
        click.echo("  （尚未确定的可用 --portal-url、--deadline 补上后重新生成；已发的访问码不变）")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="机器可读输出 (JSON).")
@click.option("--annotate", "annotate_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="写出标注问题的副本到此目录 (annotated copies for the units).")
@click.option("--roster", type=click.Path(path_type=Path), default=None, help="单位名单，用于核对单位编码.")
@click.option("--year", type=YEAR, default=None, help="应报年度 (expected budget year).")
@click.option("--template", default=None, help="应报模板 (expected template).")
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True, help="提示语言.")
@TEMPLATES_OPTION
@ISSUED_OPTION
def validate(paths, as_json, annotate_dir, roster, year, template, lang, templates_dir, issued):
    """校验填报好的申报表 (validate returned workbooks).

    PATHS 是文件或目录。退出码 0：没有错误；1：有错误；2：用法或输入错误 (exit 0: no errors; 1: errors
    found; 2: usage)."""
    from .files import display_path, ensure_writable_dir
    from .inbox import scan
    from .pipeline import CheckOptions, check_file
    from .report import annotate_workbook, checked_report
    from .roster import read_roster

    try:
        inbox = scan(list(paths))
    except FileNotFoundError as exc:
        raise missing_input(exc) from None
    if not inbox.files:
        raise click.UsageError("没有找到要校验的文件 (no files found)")
    units = {u.code: u for u in read_roster(roster)} if roster else None
    _check_issued(issued)
    options = CheckOptions(template=template, year=year, templates_dir=str(templates_dir) if templates_dir else None,
                           issued=tuple(str(p.resolve()) for p in issued))
    if template:
        from .spec import load_spec

        load_spec(template, year or _default_year(), templates_dir=templates_dir)  # an unknown name is exit 2
    if annotate_dir:
        ensure_writable_dir(annotate_dir)
    inputs = set(inbox.paths())
    written: set[str] = set()  # annotated copies' names: two forms of one name in two folders keep both
    results = []
    errors = 0
    for path in inbox.paths():
        checked = check_file(path, options, units)
        errors += checked.errors
        entry = checked_report(checked, lang)
        if annotate_dir:
            annotated = annotate_workbook(checked, annotate_dir, avoid=inputs, taken=written)
            entry["annotated"] = display_path(annotated) if annotated else None
        results.append(entry)
        if not as_json:
            _print_checked(entry, lang)
    if as_json:
        click.echo(json.dumps({"files": results}, ensure_ascii=False, indent=1))
    else:
        warnings = sum(1 for r in results for p in r["problems"] if p["severity"] == "warning")
        if lang == "en":
            click.echo(f"{len(results)} file(s): {errors} error(s), {warnings} warning(s)")
        else:
            click.echo(f"共 {len(results)} 个文件：{errors} 个错误，{warnings} 个提醒")
    sys.exit(1 if errors else 0)


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--cells", "with_cells", is_flag=True, help="列出每个工作表的所有非空单元格 (every non-empty cell).")
@click.option("--json", "as_json", is_flag=True, help="机器可读输出 (JSON).")
@TEMPLATES_OPTION
def inspect(file, with_cells, as_json, templates_dir):
    """查看 perfxl 从一个文件中读到了什么 (what perfxl reads in a file).

    格式、标识、模板、定义名称、每个字段的值和单元格：回答「perfxl 为什么说这里是空的？」(format, stamp,
    template, defined names, each field's value and cell)."""
    from .files import display_path
    from .read import inspect_workbook

    if not file.exists():
        raise PerfxlError(f"找不到文件 (no such file): {file}")
    info = inspect_workbook(file, templates_dir=templates_dir, with_cells=with_cells)
    info["path"] = display_path(info["path"])
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=1, default=str))
        sys.exit(2 if "error" in info and info.get("form") is None and "format" not in info else 0)
    click.echo(f"文件 (file): {info['path']}")
    if "format" not in info:
        click.echo(f"  无法读取 (cannot read): [{info['error']['code']}] {info['error']['message']}")
        sys.exit(2)
    click.echo(f"  格式 {info['format']}，{info['size']:,} 字节，sha256 {info['sha256'][:16]}…")
    stamp = info["stamp"]
    if stamp:
        click.echo(f"  标识 (stamp, from {stamp['source']}): " + "，".join(
            f"{k}={v}" for k, v in stamp.items() if k != "source" and v not in ("", None)))
    else:
        click.echo("  标识 (stamp): 无 (none)")
    click.echo("  工作表 (sheets): " + "，".join(
        f"{s['name']}{'（隐藏）' if s['hidden'] else ''} {s['cells']} 格" for s in info["sheets"]))
    click.echo(f"  定义名称 (defined names): {len(info['defined_names'])}")
    for n in info["defined_names"]:
        scope = f"[{n['scope']}] " if n["scope"] else ""
        click.echo(f"    {scope}{n['name']} → {n.get('sheet', '?')}!{n.get('range', n['refers_to'])}")
    form = info.get("form")
    if form is None:
        click.echo(f"  不是可识别的申报表 (not a recognised form): [{info['error']['code']}] {info['error']['message']}")
    else:
        click.echo(f"  模板 (template): {form['template']} v{form['version'] or '?'}，{form['year'] or '?'} 年，"
                   f"单位 {form['unit_code'] or '?'} {form['unit_name'] or ''}")
        for sheet in form["sheets"]:
            click.echo(f"  工作表 {sheet['sheet']}:")
            for fid, f in sheet["fields"].items():
                value = "（空）" if f["value"] in (None, "") else repr(f["value"])
                formula = f"  公式 ={f['formula']}" if f["formula"] else ""
                click.echo(f"    {f['cell']:<7} {(f['label'] or fid)[:24]:<24} {value}{formula}")
            for tid, rows in sheet["tables"].items():
                click.echo(f"    表格 {tid}: {rows} 行")
        for n in form["notices"]:
            click.echo(f"  {_SEVERITY.get(n['severity'], n['severity'])} [{n['code']}] {n['message']}")
    for sheet, cells in (info.get("cells") or {}).items():
        click.echo(f"  单元格 {sheet}:")
        for c in cells:
            formula = f"  ={c['formula']}" if c["formula"] else ""
            click.echo(f"    {c['cell']:<7} {c['type']:<6} {c['value']!r}{formula}")


_SEVERITY = {"error": "错误", "warning": "提醒"}


_STATUS = {"zh": {"valid": "通过", "warnings": "通过（有提醒）", "errors": "有错误", "rejected": "无法读取"},
           "en": {"valid": "valid", "warnings": "valid (with warnings)", "errors": "errors", "rejected": "cannot read"}}


def _print_checked(entry: dict, lang: str) -> None:
    from .problems import severity_text

    status = _STATUS[lang].get(entry["status"], entry["status"])
    problems = entry["problems"]
    if entry["status"] == "rejected" and problems:  # what could not be read, and why, on its own line
        why = problems[0]
        colon = ": " if lang == "en" else "："
        click.echo(f"{entry['path']}  {status}{colon}{why['message']}  [{why['code']}]")
        problems = problems[1:]
    else:
        known = " ".join(str(part) for part in (entry["template"], entry["year"], entry["unit"]["name"]) if part)
        click.echo(f"{entry['path']}  " + (f"[{known}] " if known else "") + status)
    for p in problems:
        where = f"{p['sheet']}!{p['cell']}" if p["cell"] else p["sheet"]
        severity = severity_text(p["severity"], lang)
        severity = severity.ljust(7 if lang == "en" else 3)
        click.echo(f"  {severity} {where:<16} {p['message']}  [{p['code']}]")


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="汇总表 .xlsx (the summary workbook).")
@click.option("--roster", type=click.Path(path_type=Path), default=None, help="单位名单 (who is expected).")
@click.option("--template", default=None, help="只汇总此模板 (merge only this template).")
@click.option("--year", type=YEAR, default=None, help="只汇总此年度 (merge only this year).")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="报送台账 SQLite 文件 (default: beside the summary).")
@click.option("--csv", "csv_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="同时输出 CSV 到此目录 (UTF-8 with BOM).")
@click.option("--parquet", "parquet_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="同样的各表另存为 Parquet（每表一个文件，不受 Excel 行数限制；需要 perfxl[parquet]）.")
@click.option("--jobs", type=click.IntRange(0, 64), default=0, show_default=True,
              help="并行进程数，0 为 CPU 核数；1 为单进程 (worker processes).")
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True, help="提示语言.")
@click.option("--returns", "returns_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="写出退回包：审核为中/差或有错误的单位，标注原表和退回通知 (the return package).")
@click.option("--return-by", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="退回通知中的重新报送期限 (default: 7 days from today).")
@HISTORY_OPTION
@LIBRARY_OPTION
@TEMPLATES_OPTION
@ISSUED_OPTION
def merge(inputs, output, roster, template, year, db, csv_dir, parquet_dir, jobs, lang, returns_dir, return_by,
          history, library, templates_dir, issued):
    """汇总所有报送的表 (merge returned forms into the summary).

    INPUTS 是文件或目录（收件箱），也可以是下级的导出文件或报送台账（节点汇总）。"""
    import time

    from .merging import MergeOptions, run_merge

    _check_issued(issued)
    options = MergeOptions(template=template, year=year, roster=roster, jobs=jobs, db=db, csv_dir=csv_dir,
                           parquet_dir=parquet_dir, lang=lang,
                           returns_dir=returns_dir, return_by=return_by.date().isoformat() if return_by else None,
                           templates_dir=templates_dir, issued=tuple(issued), history=tuple(history), library=library)
    started = time.perf_counter()
    bar = _LazyBar("汇总")
    try:
        result = run_merge(list(inputs), output, options, progress=bar.update, on_total=bar.start, let_go=True)
    finally:
        bar.close()
    if result.counts["files_in"] == 0:
        raise click.UsageError("输入中没有找到任何报送文件 (no files found under the inputs)"
                               + (f"；跳过 {len(result.skipped)} 个文件（{_skipped_kinds(result.skipped)}）" if result.skipped else ""))
    _print_merge(result, time.perf_counter() - started, csv_dir, returns_dir)
    if parquet_dir:
        click.echo(f"Parquet → {parquet_dir}")


def _skipped_kinds(skipped: list[tuple[str, str]]) -> str:
    """What a walk passed over, by kind: 隐藏文件 2 个，Office 锁定文件 1 个 …"""
    from .inbox import SKIP_REASONS

    kinds = Counter(reason for _, reason in skipped)
    return "，".join(f"{SKIP_REASONS[k][0]} {n} 个" for k, n in sorted(kinds.items()))


def _print_merge(result, seconds: float, csv_dir, returns_dir=None) -> None:
    c = result.counts
    click.echo(f"读取文件 {c['files_in']} 个（本次读取 {c['read']}，取自台账 {c['from_ledger']}），用时 {seconds:.1f} 秒")
    click.echo(f"  已汇总 {c['merged']}，无法读取 {c['rejected']}，重复 {c['duplicate']}，"
               f"被更新版本取代 {c['superseded']}，不符合汇总条件 {c['excluded']}")
    if result.skipped:
        click.echo(f"  已跳过（不计入收到文件）：{_skipped_kinds(result.skipped)}")
    if "compared" in c:
        click.echo(f"  历史对比：{c['compared']} 条发现（与往年台账、同类单位、指标库比较），已计入目标审核")
    for note in result.notes:
        click.echo(f"  注意：{note}")
    if result.unsettled:
        click.echo(f"  注意：{len(result.unsettled)} 个文件在汇总期间一直在变化，按最后一次读到的内容汇总："
                   + "、".join(result.unsettled[:5]))
    subjects = "，".join(f"{word} {c[key]}" for word, key in (("项目", "projects"), ("部门整体", "departments"))
                         if c.get(key) or key == "projects" and not c.get("departments"))
    click.echo(f"  单位 {c['units']}，{subjects}，指标 {c['indicators']} 行；错误 {c['errors']}，提醒 {c['warnings']}")
    if result.missing_units:
        names = "、".join(u.name for u in result.missing_units[:10])
        more = f" 等 {len(result.missing_units)} 个" if len(result.missing_units) > 10 else ""
        click.echo(f"  未报送 {len(result.missing_units)} 个单位：{names}{more}")
    click.echo(f"汇总表 → {result.output}")
    if csv_dir:
        click.echo(f"CSV → {csv_dir}")
    if returns_dir:
        package = result.returns  # returns.ReturnPackage: what was written, not what the names end with
        click.echo(f"退回包 → {returns_dir}（{len(package.notices)} 个单位需修改后重新报送："
                   f"退回通知 {len(package.notices)} 份，标注原表 {len(package.annotated)} 份）")


@cli.group("library")
def library_group():
    """指标库：从往年台账生成，用于生成和汇总 (the indicator library)."""


@library_group.command("build")
@click.argument("ledgers", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="指标库 .xlsx (the library workbook).")
@TEMPLATES_OPTION
def library_build(ledgers, output, templates_dir):
    """从往年报送台账生成指标库 (build an indicator library from ledgers).

    只收目标审核为优、良的项目；每个指标列出使用项目数、典型值（中位数、P10、P90）和示例。
    财政局可删除不合适的行，在「固化指标」列填“是”，再用 --library 指定。"""
    from .comparison import name_key
    from .history import load_history
    from .library import GOOD_GRADES, build_library, write_library

    if output.suffix.lower() != ".xlsx":
        raise click.UsageError(f"指标库应保存为 .xlsx：{output}")
    if any(os.path.realpath(output) == os.path.realpath(p) for p in ledgers):
        raise PerfxlError(f"输出文件 {output} 是输入的台账，perfxl 不会覆盖它")
    history = load_history(list(ledgers), templates_dir)
    library = build_library(history)
    projects = {(p.unit_code, name_key(p.name)) for p in history.projects}
    graded = len({(p.unit_code, name_key(p.name)) for p in history.projects if p.review_grade in GOOD_GRADES})
    write_library(library, graded, output)
    required = sum(1 for e in library.entries if e.required)
    click.echo(f"指标库 → {output}：{len(library.entries)} 个指标，来自 {graded} 个审核为优、良的项目"
               f"（台账中共 {len(projects)} 个项目）" + (f"，固化指标 {required} 个" if required else ""))


@cli.command("approve")
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="申报汇总的报送台账：批准的调整记入其中 (the declaration's ledger).")
@click.option("--from", "adjustments", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="调整表汇总的报送台账 (the ledger of the merged adjustment forms).")
@click.option("--units", required=True, help="单位编码，多个用逗号分隔 (unit codes, comma-separated).")
@click.option("--reject", is_flag=True, help="退回，不批准 (reject instead of approve).")
@click.option("--comment", default="", help="意见；退回时必填 (a comment; required to reject).")
@click.option("--by", "decided_by", default="", help="审批人 (who decides).")
@click.option("--batch", default=None, help="批次，默认为年月，如 2021-07 (the batch).")
@TEMPLATES_OPTION
def approve(ledger_path, adjustments, units, reject, comment, decided_by, batch, templates_dir):
    """批准或退回单位的绩效目标调整 (approve or reject adjustments).

    批准后，调整后的指标成为该项目指标的新版本，记入申报的报送台账；之后从台账生成的监控表、自评表
    按新版本预填和计分。每次决定都保留，不覆盖。"""
    from .versions import STATUS_ZH, decide

    codes = [c.strip() for c in units.replace("，", ",").split(",") if c.strip()]
    if not codes:
        raise click.BadParameter("请给出至少一个单位编码", param_hint="--units")
    if reject and not comment.strip():
        raise click.BadParameter("退回时请写明意见，单位据此修改", param_hint="--comment")
    for path, what in ((ledger_path, "申报汇总的报送台账"), (adjustments, "调整表汇总的报送台账")):
        if not path.is_file():
            raise PerfxlError(f"{what}不存在 (ledger not found): {path}")
    decided = decide(ledger_path, adjustments, codes, approve=not reject, comment=comment, by=decided_by,
                     batch=batch, templates_dir=templates_dir)
    for v in decided:
        changes = len(v.content.get("changes") or [])
        click.echo(f"{STATUS_ZH[v.status]}：{v.unit_code} {v.project}（第 {v.id} 版，{v.kind or '未注明类型'}，"
                   f"调整 {changes} 个指标）")
    if not decided:
        click.echo("这些单位的调整表没有申请调整任何内容，未记录")
    elif not reject:
        click.echo(f"已记入 {ledger_path}；之后用 --from 此台账生成的监控表、自评表按批准的指标预填和计分")


@cli.command("export")
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="本级汇总的报送台账 (the ledger of this level's merge).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="导出文件，如 甲县.perfxl (the file to send up).")
def export(ledger_path, output):
    """导出本级汇总的结果，供上级汇总 (a merge, for the level above).

    上级把导出文件和其他下级的导出文件一起交给 perfxl merge 即可，如
    perfxl merge 甲县.perfxl 乙县.perfxl -o 市汇总.xlsx。"""
    from .ledger import export_merged

    if not ledger_path.is_file():
        raise PerfxlError(f"报送台账不存在 (ledger not found): {ledger_path}")
    forms = export_merged(ledger_path, output)
    size = output.stat().st_size / 2**20
    click.echo(f"已导出 {forms} 份已汇总的表 → {output}（{size:.1f} MB）；上级汇总时作为 perfxl merge 的输入即可")


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=Path("outputs") / "demo")
def demo(folder):
    """演示一个预算年度的完整流程 (the whole cycle on sample data).

    生成 → 填报 → 汇总 → 退回 → 运行监控 → 绩效自评，写到 FOLDER（默认当前目录下的 outputs/demo）；以前演示写出的
    内容会被替换，有其他文件的文件夹不会被清空 (an earlier demo's folder is replaced, no other folder is cleared)."""
    from .demo import run_demo

    run_demo(folder, echo=click.echo, print_merge=_print_merge)


@cli.command()
@click.argument("store", type=click.Path(file_okay=False, path_type=Path))
@click.option("--roster", type=click.Path(dir_okay=False, path_type=Path), required=True, help="单位名单 (roster).")
@click.option("--forms", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="perfxl generate 写出的目录（空白表或自评表/监控表，含 manifest.json 和访问码）.")
@click.option("--admin-password-file", type=click.Path(path_type=Path), default=None,
              help="汇总人登录密码所在的文件（一行）；也可用环境变量 PERFXL_ADMIN_PASSWORD。密码不要写在命令行上.")
@click.option("--admin-password", "admin_password_on_command_line", default=None, hidden=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="监听地址；单位内网用 0.0.0.0.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535),
              help="监听端口：单位在浏览器中打开 http://本机地址:端口/ (the port).")
@click.option("--proxy", default=None,
              help="前面的反向代理（如 nginx）的地址，如 127.0.0.1：只信任它转来的 X-Forwarded-For；不用代理时不要设置.")
@click.option("--deadline", type=click.DateTime(["%Y-%m-%d"]), default=None, help="报送截止日期 YYYY-MM-DD.")
@click.option("--max-upload-mb", default=50, show_default=True, type=click.IntRange(1, 1024),
              help="单个上传文件的大小上限（MB）(the largest upload accepted).")
@click.option("--jobs", default=2, show_default=True, type=click.IntRange(1, 64), help="检查文件的进程数.")
@click.option("--year", type=YEAR, default=None,
              help="应报年度：其他年度的表检查时报错，下载的汇总只含此年度 (the expected budget year).")
@TEMPLATES_OPTION
def serve(store, roster, forms, admin_password_file, admin_password_on_command_line, host, port, proxy, deadline,
          max_upload_mb, jobs, year, templates_dir):
    """报送网页：单位上传、即时检查，汇总人看报送情况 (the portal).

    单位用访问码上传并即时看到检查结果，财政局查看报送情况、下载汇总；STORE 是保存上传文件的目录。"""
    if admin_password_on_command_line is not None:
        raise PerfxlError("管理密码不能写在命令行上（本机其他用户用 ps 就能看到）：请把密码写进一个文件，用 "
                          "--admin-password-file 文件 指定，或设置环境变量 PERFXL_ADMIN_PASSWORD "
                          "(--admin-password is no longer accepted: use --admin-password-file or PERFXL_ADMIN_PASSWORD)")
    try:
        import uvicorn

        from .portal.app import PortalConfig, create_app
    except ImportError:
        raise PerfxlError('报送网页需要安装扩展：pip install "perfxl[serve]" (the portal needs the serve extra)') from None
    from .manifest import read_manifest
    from .roster import read_roster

    admin_password = _admin_password(admin_password_file)
    proxies = _proxy_addresses(proxy)
    if not forms.is_dir():
        raise PerfxlError(f"找不到 --forms 文件夹 (no such folder): {forms}：应为 perfxl generate 写出的目录")
    handed_out = read_manifest(forms)  # a Chinese error for a missing or damaged manifest.json
    if not any(e["access_code"] for e in handed_out.forms):
        raise PerfxlError(f"{forms} 的 manifest.json 中没有访问码（由旧版 perfxl 生成）：请用当前版本的 perfxl generate "
                          f"重新生成到这个目录，它会写出访问码和 分发清单.xlsx")
    units = read_roster(roster)
    store.mkdir(parents=True, exist_ok=True)
    config = PortalConfig(store, units, roster, forms, admin_password, deadline.date() if deadline else None,
                          max_upload_mb, jobs, templates_dir, year)
    behind = f"；只信任代理 {', '.join(proxies)} 转来的客户地址" if proxies else ""
    click.echo(f"报送网页：http://{host}:{port}/  （{len(units)} 个单位；数据保存在 {store}{behind}；按 Ctrl+C 停止）")
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", **_proxy_options(proxies))


PASSWORD_ENV = "PERFXL_ADMIN_PASSWORD"


def _admin_password(path: Path | None) -> str:
    """The admin password from its file (one line; the line break after it is not part of it), else from
    the environment. Never from the command line, which every local user can read (`ps`, /proc)."""
    if path is not None:
        password = _password_from_file(path)
    elif os.environ.get(PASSWORD_ENV) is not None:
        password = os.environ.pop(PASSWORD_ENV)  # not handed down to the checker workers
    else:
        raise PerfxlError(f"请指定汇总人的登录密码：--admin-password-file 密码文件（文件中一行），或环境变量 {PASSWORD_ENV} "
                          "(give the admin password in a file or the environment)")
    if not password:
        raise PerfxlError("管理密码是空的 (the admin password is empty)")
    if len(password) < 8:
        raise PerfxlError("管理密码至少 8 个字符 (the admin password needs 8 characters or more)")
    return password


def _password_from_file(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read(4097)
            mode = os.fstat(fh.fileno()).st_mode
    except FileNotFoundError:
        raise PerfxlError(f"找不到管理密码文件 (no such password file): {path}") from None
    except OSError as exc:
        raise PerfxlError(f"无法读取管理密码文件 {path} (cannot read the password file): {exc.strerror or exc}") from None
    if len(data) > 4096:
        raise PerfxlError(f"管理密码文件 {path} 过大：文件中只应有一行密码")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:  # saved by Notepad in the Chinese Windows code page
        text = data.decode("gb18030", errors="replace")
    for ending in ("\r\n", "\n", "\r"):
        if text.endswith(ending):
            text = text[: -len(ending)]
            break
    if "\n" in text or "\r" in text:
        raise PerfxlError(f"管理密码文件 {path} 中只能有一行（密码本身）(the password file must hold one line)")
    if os.name == "posix" and mode & 0o077:
        click.echo(f"提醒：管理密码文件 {path} 其他用户也能读取，建议 chmod 600 {path}", err=True)
    return text


def _proxy_addresses(proxy: str | None) -> list[str]:
    """The reverse proxy's addresses (comma-separated; an address or a network such as 10.0.0.0/24)."""
    import ipaddress

    if proxy is None:
        return []
    out = []
    for item in (p.strip() for p in proxy.split(",")):
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)) if "/" in item else str(ipaddress.ip_address(item)))
        except ValueError:
            raise PerfxlError(f"--proxy 应为反向代理的 IP 地址（如 127.0.0.1），不是 {item or '空'} "
                              "(--proxy takes the proxy's IP address)") from None
    return out


def _proxy_options(proxies: list[str]) -> dict:
    """uvicorn takes a client's address from X-Forwarded-For only when the connection comes from a proxy
    named here; by default it trusts 127.0.0.1, which would let any local client name its own address."""
    if not proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(proxies)}


def _check_issued(paths) -> None:
    """A record named with --issued must be one: a typo would otherwise make every follow-up form unchecked."""
    from .ledger import is_ledger

    for path in paths:
        if not path.is_file():
            raise PerfxlError(f"找不到下发记录 (no such record): {path}")
        if not is_ledger(path):
            raise PerfxlError(f"{path} 不是 perfxl 写出的下发记录或报送台账 (not a perfxl record)")


def _default_year() -> int:
    from .domain import default_year

    return default_year()


class _LazyBar:
    """A progress bar that appears once the merge knows how many files there are (and only on a terminal)."""

    def __init__(self, label: str):
        self.label, self.bar = label, None

    def start(self, total: int) -> None:
        if total >= 50 and sys.stderr.isatty():
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


class _NullBar:
    def update(self, n=1):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _progress(total: int, label: str):
    if total >= 50 and sys.stderr.isatty():
        return click.progressbar(length=total, label=label, file=sys.stderr)
    return _NullBar()


def main():
    # Windows consoles default to a legacy code page; Chinese output must not crash there.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and (stream.encoding or "").lower() not in {"utf-8", "utf8"}:
            try:
                stream.reconfigure(errors="replace")
            except (ValueError, OSError):
                pass
    cli(prog_name="perfxl", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main()
