"""`perfxl template import`: a bureau's blank form, designed in Excel, becomes a template.

The designed workbook holds the form as it should look, and definition sheets in the spirit of XLSForm:
- 字段: one row per input cell (单元格, 标识, 标签, 类型, 必填, 选项, 说明, 默认值);
- 表格: one row per repeating table (区域, 标识, 标签, 列类型, 指标层级);
- 规则: optional, one row per rule of perfxl's registry (规则, 参数, 严重程度, 说明);
- 设置: 项目 / 值 pairs (模板标识, 版本, 标题, 金额单位, 多项目, …).

Every mistake is collected with its sheet and row and reported together; nothing is written unless the
whole import succeeds: the template is assembled in a scratch folder, loaded back as a spec, one form is
built from it, and only then moved into place.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import openpyxl
import yaml

from perfxl.errors import PerfxlError, SpecError, os_reason
from perfxl.reader.zipguard import MAX_ENTRIES, MAX_MEMBER_BYTES, MAX_TOTAL_BYTES
from perfxl.rules import REGISTRY, check_params
from perfxl.spec import FIELD_TYPES, load_spec, split_cell

FIELDS, TABLES, RULES, SETTINGS = "字段", "表格", "规则", "设置"
DEFINITION_SHEETS = (FIELDS, TABLES, RULES, SETTINGS)
MAX_DESIGN_BYTES = 20 * 1024 * 1024

# The types a designer writes, and perfxl's.
TYPES = {"文本": "text", "长文本": "longtext", "金额": "money", "数字": "number", "整数": "integer", "日期": "date",
         "选项": "choice", "电话": "phone", "编码": "code", "百分比": "percent", "起止日期": "daterange",
         "指标值": "target"}
COLUMN_TYPES = {"文本": "text", "长文本": "longtext", "金额": "money", "数字": "number", "整数": "integer",
                "日期": "date", "选项": "choice", "指标值": "target"}
YES = {"是", "Y", "y", "yes", "YES", "true", "TRUE", "1", "√", "必填"}
NO = {"否", "N", "n", "no", "NO", "false", "FALSE", "0", "", "选填"}
SEVERITY = {"错误": "error", "提醒": "warning", "警告": "warning", "error": "error", "warning": "warning", "": "error"}
MONEY_UNITS = ("元", "千元", "万元", "亿元")
SPLIT = re.compile(r"[、,，;；/\n]+")
# The printed headers that say which column of an indicator table is which level.
LEVEL_HEADERS = {"level1": ("一级指标",), "level2": ("二级指标",), "level3": ("三级指标",),
                 "target": ("指标值", "目标值", "年度指标值", "绩效指标值")}
SETTING_KEYS = {"模板标识": "template", "版本": "version", "标题": "title", "金额单位": "money_unit",
                "多项目": "multi_project", "类别": "family", "工作表名称": "sheet_name", "表单工作表": "form_sheet",
                "项目名称字段": "project_name_field", "预算字段": "budget_field", "单位名称字段": "unit_name_field",
                "地区": "region"}


@dataclass(frozen=True)
class DesignProblem:
    sheet: str
    row: int | None  # 1-based, as Excel shows it; None for the sheet as a whole
    message: str

    def __str__(self) -> str:
        where = f"「{self.sheet}」" + (f"第 {self.row} 行" if self.row else "")
        return f"{where}：{self.message}"


class DesignError(PerfxlError):
    """The definition sheets have mistakes: every one of them, with sheet and row."""

    def __init__(self, problems: list[DesignProblem]):
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"表样定义有 {len(problems)} 处问题，未导入 (the design was not imported):\n{lines}")


@dataclass
class ImportResult:
    template: str
    yaml_path: Path
    workbook_path: Path
    fields: int
    tables: int
    rules: int


@dataclass
class _Design:
    wb: Any
    form: Any  # the form sheet
    problems: list[DesignProblem] = field(default_factory=list)

    def problem(self, sheet: str, row: int | None, message: str) -> None:
        self.problems.append(DesignProblem(sheet, row, message))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _open(path: Path) -> Any:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PerfxlError(f"无法读取表样工作簿 {path}：{os_reason(exc)}") from None
    if len(data) > MAX_DESIGN_BYTES:
        raise PerfxlError(f"{path}: 表样工作簿超过 {MAX_DESIGN_BYTES // 1024 // 1024} MB，不像一张表样")
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ENTRIES or any(i.file_size > MAX_MEMBER_BYTES for i in infos) \
                    or sum(i.file_size for i in infos) > MAX_TOTAL_BYTES:
                raise PerfxlError(f"{path}: 表样工作簿解压后过大 (too large when unpacked)")
        return openpyxl.load_workbook(io.BytesIO(data), rich_text=True)
    except PerfxlError:
        raise
    except Exception as exc:  # not an xlsx, encrypted, corrupt: a user's file
        raise PerfxlError(f"{path}: 不是可读的 .xlsx 表样工作簿 (not a readable .xlsx): {exc}") from None


def _rows(ws) -> list[tuple[int, dict[str, str]]]:
    """(Excel row, {header: text}) for every non-empty row below the header row."""
    rows = list(ws.iter_rows(values_only=True))
    if not rows:
        return []
    headers = [_text(h) for h in rows[0]]
    out = []
    for i, row in enumerate(rows[1:], start=2):
        record = {h: _text(v) for h, v in zip(headers, row) if h}
        if any(record.values()):
            out.append((i, record))
    return out


def _settings(d: _Design) -> dict[str, str]:
    if SETTINGS not in d.wb.sheetnames:
        d.problem(SETTINGS, None, "缺少「设置」工作表（两列：项目 / 值，至少写模板标识）")
        return {}
    out = {}
    for i, row in enumerate(d.wb[SETTINGS].iter_rows(values_only=True), start=1):
        key, value = (_text(row[0]) if row else ""), (_text(row[1]) if len(row) > 1 else "")
        if not key or key in {"项目", "设置项"}:
            continue
        if key not in SETTING_KEYS:
            d.problem(SETTINGS, i, f"未知的设置项“{key}”；可用：{'、'.join(SETTING_KEYS)}")
            continue
        out[SETTING_KEYS[key]] = value
    name = out.get("template", "")
    if not re.fullmatch(r"[A-Za-z0-9_\-]+/[A-Za-z0-9_\-]+", name):
        d.problem(SETTINGS, None, f"模板标识应写成“地区/表名”形式的英文字母、数字，例如 acme/project，而不是“{name}”")
    if out.get("money_unit", "元") not in MONEY_UNITS:
        d.problem(SETTINGS, None, f"金额单位应为 {'、'.join(MONEY_UNITS)} 之一，而不是“{out['money_unit']}”")
    for key in ("multi_project",):
        if out.get(key, "否") not in YES | NO:
            d.problem(SETTINGS, None, f"多项目应填 是 或 否，而不是“{out[key]}”")
    if out.get("family", "project") not in {"project", "department", "项目", "部门"}:
        d.problem(SETTINGS, None, f"类别应为 项目 或 部门，而不是“{out['family']}”")
    return out


def _form_sheet(wb, settings: dict[str, str], problems: list[DesignProblem]) -> Any:
    chosen = settings.get("form_sheet")
    if chosen:
        if chosen not in wb.sheetnames or chosen in DEFINITION_SHEETS:
            problems.append(DesignProblem(SETTINGS, None, f"表单工作表“{chosen}”不存在"))
            return None
        return wb[chosen]
    visible = [ws for ws in wb.worksheets if ws.title not in DEFINITION_SHEETS and ws.sheet_state == "visible"]
    if len(visible) != 1:
        names = "、".join(ws.title for ws in visible) or "（无）"
        problems.append(DesignProblem(SETTINGS, None, f"除定义工作表外应恰有一张表单工作表，现有：{names}；"
                                                      "请在「设置」中用“表单工作表”指明"))
        return None
    return visible[0]


def _address(d: _Design, sheet: str, row: int, text: str, what: str) -> tuple[int, int] | None:
    """A cell (or the top left of a range) of the form sheet, 0-based; None after reporting why not."""
    if "!" in text:
        where, _, text = text.rpartition("!")
        if where.strip("'") != d.form.title:
            d.problem(sheet, row, f"{what}“{where}!{text}”不在表单工作表“{d.form.title}”上")
            return None
    try:
        r, c = split_cell(text)
    except ValueError:
        d.problem(sheet, row, f"{what}“{text}”不是单元格地址（应写成 B3 这样）")
        return None
    if r >= d.form.max_row or c >= d.form.max_column:
        d.problem(sheet, row, f"{what} {text} 在表单之外（表单范围到 {_corner(d.form)}）")
        return None
    return r, c


def _corner(ws) -> str:
    return f"{openpyxl.utils.get_column_letter(ws.max_column)}{ws.max_row}"


def _merged_anchor(ws, r: int, c: int) -> tuple[int, int, int, int]:
    """The merged range (0-based, inclusive) holding a cell, or the cell alone."""
    for rng in ws.merged_cells.ranges:
        if rng.min_row - 1 <= r <= rng.max_row - 1 and rng.min_col - 1 <= c <= rng.max_col - 1:
            return rng.min_row - 1, rng.min_col - 1, rng.max_row - 1, rng.max_col - 1
    return r, c, r, c


def _label_near(ws, r: int, c: int, inputs: set[tuple[int, int]]) -> str:
    """The text nearest to the left of an input cell, else above it: what the form prints as its label."""
    for line in (((r, cc) for cc in range(c - 1, -1, -1)), ((rr, c) for rr in range(r - 1, -1, -1))):
        for rr, cc in line:
            if (rr, cc) in inputs:  # another input: this direction holds no label of ours
                break
            value = _text(ws.cell(row=rr + 1, column=cc + 1).value)
            if value:
                return value
    return ""


def _identifier(label: str, taken: set[str]) -> str:
    base = re.sub(r"\W+", "_", label.rstrip("：: ")).strip("_")[:40] or "field"
    if base[0].isdigit():
        base = "f" + base
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    return candidate


def _fields(d: _Design, tables_cells: set[tuple[int, int]]) -> dict[str, dict]:
    if FIELDS not in d.wb.sheetnames:
        d.problem(FIELDS, None, "缺少「字段」工作表（每个填写单元格一行：单元格、标识、标签、类型、必填、选项、说明、默认值）")
        return {}
    rows = _rows(d.wb[FIELDS])
    located: list[tuple[int, dict, tuple[int, int]]] = []
    seen: dict[tuple[int, int], int] = {}
    for row, record in rows:
        if not record.get("单元格"):
            d.problem(FIELDS, row, "没有写单元格")
            continue
        at = _address(d, FIELDS, row, record["单元格"], "单元格")
        if at is None:
            continue
        if at in seen:
            d.problem(FIELDS, row, f"单元格 {record['单元格']} 与第 {seen[at]} 行重复")
            continue
        if at in tables_cells:
            d.problem(FIELDS, row, f"单元格 {record['单元格']} 在某个表格的区域之内，不能再作字段")
            continue
        seen[at] = row
        located.append((row, record, at))
    out: dict[str, dict] = {}
    taken: set[str] = set()
    for row, record, at in located:
        kind = record.get("类型", "") or "文本"
        if kind not in TYPES or TYPES[kind] not in FIELD_TYPES | {"target"}:
            d.problem(FIELDS, row, f"未知类型“{kind}”；可用：{'、'.join(TYPES)}")
            continue
        label = record.get("标签") or _label_near(d.form, at[0], at[1], set(seen) | tables_cells)
        if not label:
            d.problem(FIELDS, row, f"单元格 {record['单元格']} 没有标签：请在「标签」列填写，或在它左边、上方的单元格写上文字")
            continue
        fid = record.get("标识") or _identifier(label, taken)
        if not re.fullmatch(r"[^\W\d]\w{0,59}", fid):
            d.problem(FIELDS, row, f"标识“{fid}”只能由字母、汉字、数字、下划线组成，且不以数字开头")
            continue
        if fid in taken:
            d.problem(FIELDS, row, f"标识“{fid}”重复")
            continue
        taken.add(fid)
        required = record.get("必填", "")
        if required not in YES | NO:
            d.problem(FIELDS, row, f"必填应填 是 或 否，而不是“{required}”")
        choices = [c for c in SPLIT.split(record.get("选项", "")) if c]
        ftype = TYPES[kind] if TYPES[kind] != "target" else "text"
        if ftype == "choice" and not choices:
            d.problem(FIELDS, row, "类型为选项，但「选项」列是空的（选项之间用、分隔）")
        entry: dict[str, Any] = {"label": label.rstrip("：: ") or label, "type": ftype, "cell": record["单元格"].split("!")[-1].upper(),
                                 "required": required in YES}
        if choices:
            entry["choices"] = choices
        if record.get("说明"):
            entry["help"] = record["说明"]
        if record.get("默认值"):
            entry["default"] = record["默认值"]
        if ftype == "money":
            entry["min"] = 0
        out[fid] = entry
        entry["_row"] = row
    return out


def _tables(d: _Design) -> tuple[dict[str, dict], set[tuple[int, int]]]:
    if TABLES not in d.wb.sheetnames:
        return {}, set()
    out: dict[str, dict] = {}
    covered: dict[tuple[int, int], str] = {}
    taken: set[str] = set()
    for row, record in _rows(d.wb[TABLES]):
        area = record.get("区域", "")
        if ":" not in area:
            d.problem(TABLES, row, f"区域“{area}”应写成 A12:F40 这样的范围（表体，不含表头）")
            continue
        first, _, last = area.partition(":")
        top = _address(d, TABLES, row, first, "区域起点")
        bottom = _address(d, TABLES, row, last, "区域终点")
        if top is None or bottom is None:
            continue
        (r0, c0), (r1, c1) = top, bottom
        if r1 < r0 or c1 < c0:
            d.problem(TABLES, row, f"区域 {area} 的起点应在左上、终点在右下")
            continue
        if r0 == 0:
            d.problem(TABLES, row, f"区域 {area} 上方没有表头行：区域应只含表体，表头在它上面一行")
            continue
        cells = {(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}
        clash = sorted({covered[x] for x in cells if x in covered})
        if clash:
            d.problem(TABLES, row, f"区域 {area} 与表格“{'、'.join(clash)}”重叠")
            continue
        label = record.get("标签", "")
        tid = record.get("标识") or _identifier(record.get("标签") or "table", taken)
        if tid in taken or not re.fullmatch(r"[^\W\d]\w{0,59}", tid):
            d.problem(TABLES, row, f"标识“{tid}”重复或不合规")
            continue
        taken.add(tid)
        # Columns: left to right over the header row; a merged header (or body cell) counts once.
        spans = []
        c = c0
        while c <= c1:
            _, m0, _, m1 = _merged_anchor(d.form, r0 - 1, c)
            if m0 != c:
                m1 = c
            _, b0, _, b1 = _merged_anchor(d.form, r0, c)
            width = max(m1, b1 if b0 == c else c) - c + 1
            width = min(width, c1 - c + 1)
            spans.append((c, width))
            c += width
        types = [t for t in SPLIT.split(record.get("列类型", "")) if t]
        if len(types) != len(spans):
            shown = "、".join(openpyxl.utils.get_column_letter(x + 1) + ("" if w == 1 else "–" + openpyxl.utils.get_column_letter(x + w))
                             for x, w in spans)
            d.problem(TABLES, row, f"列类型写了 {len(types)} 个，区域 {area} 有 {len(spans)} 列（{shown}；合并的列算一列）")
            continue
        unknown = [t for t in types if t.split(":")[0].split("：")[0] not in COLUMN_TYPES]
        if unknown:
            d.problem(TABLES, row, f"未知的列类型“{'、'.join(unknown)}”；可用：{'、'.join(COLUMN_TYPES)}")
            continue
        headers = []
        for x, _ in spans:
            text = _text(d.form.cell(row=r0, column=x + 1).value)
            if not text and r0 >= 2:
                text = _text(d.form.cell(row=r0 - 1, column=x + 1).value)
            headers.append(text or f"第{len(headers) + 1}列")
        columns = []
        col_taken: set[str] = set()
        hierarchy = record.get("指标层级", "")
        for (_, width), kind, header in zip(spans, types, headers):
            cid = None
            if hierarchy:
                cid = next((key for key, names in LEVEL_HEADERS.items()
                            if any(header.startswith(n) for n in names) and key not in col_taken), None)
            cid = cid or _identifier(header, col_taken | set(LEVEL_HEADERS))
            col_taken.add(cid)
            name, _, options = kind.replace("：", ":").partition(":")
            column: dict[str, Any] = {"id": cid, "label": header, "type": COLUMN_TYPES[name], "span": width}
            if options:
                column["choices"] = [o for o in re.split(r"[/|]", options) if o]
            elif COLUMN_TYPES[name] == "choice" and cid not in {"level1", "level2"}:
                d.problem(TABLES, row, f"列“{header}”类型为选项，请写成 选项:甲/乙/丙")
            columns.append(column)
        entry: dict[str, Any] = {"label": label or tid, "range": f"{first.split('!')[-1].upper()}:{last.upper()}",
                                 "columns": columns, "_row": row}
        if hierarchy:
            missing = [LEVEL_HEADERS[k][0] for k in ("level1", "level3", "target") if k not in col_taken]
            if missing:
                d.problem(TABLES, row, f"指标表的表头中找不到 {'、'.join(missing)}（表头行为第 {r0} 行：{'、'.join(headers)}）")
                continue
            entry["indicator"] = {"hierarchy": hierarchy, "level1": "level1", "level3": "level3", "values": ["target"],
                                  "required_levels": []}
            if "level2" in col_taken:
                entry["indicator"]["level2"] = "level2"
        out[tid] = entry
        for x in cells:
            covered[x] = tid
    return out, set(covered)


def _param_value(text: str, kind: str) -> Any:
    if kind == "fields":
        return [v for v in SPLIT.split(text) if v]
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            return text
    return text


def _rules(d: _Design, fields: dict, tables: dict) -> list[dict]:
    if RULES not in d.wb.sheetnames:
        return []
    out = []
    for row, record in _rows(d.wb[RULES]):
        kind = record.get("规则", "")
        if kind not in REGISTRY:
            d.problem(RULES, row, f"未知的规则“{kind}”；可用：{'、'.join(sorted(REGISTRY))}")
            continue
        types = {p.name: p.type for p in REGISTRY[kind].params}
        params: dict[str, Any] = {}
        bad = False
        for pair in (p for p in re.split(r"[；;]", record.get("参数", "")) if p.strip()):
            key, eq, value = pair.partition("=")
            if not eq:
                d.problem(RULES, row, f"参数“{pair}”应写成 名称=值，多个参数用；分隔")
                bad = True
                continue
            params[key.strip()] = _param_value(value.strip(), types.get(key.strip(), "text"))
        for word, source in (("what", ("total", "whole")), ("part_label", ("part",)), ("whole_label", ("whole",))):
            if word in types and word not in params:  # the words a message needs: the named field's label
                named = next((params[k] for k in source if isinstance(params.get(k), str)), None)
                params[word] = fields[named]["label"] if named in fields else kind
        if kind == "indicators" and params.get("table") in tables and "indicator" not in tables[params["table"]]:
            d.problem(RULES, row, f"规则 indicators 检查指标表，但表格“{params['table']}”没有写「指标层级」")
            bad = True
        severity = SEVERITY.get(record.get("严重程度", ""))
        if severity is None:
            d.problem(RULES, row, f"严重程度应为 错误 或 提醒，而不是“{record['严重程度']}”")
            bad = True
        try:
            # the checker asks only whether a field or table exists and which columns a table has
            columns = {tid: SimpleNamespace(columns=[SimpleNamespace(id=c["id"]) for c in t["columns"]])
                       for tid, t in tables.items()}
            params = check_params(kind, params, fields, columns)
        except ValueError as exc:
            d.problem(RULES, row, str(exc))
            bad = True
        if bad:
            continue
        codes = getattr(REGISTRY[kind], "codes", ()) or (kind,)
        rule = {"kind": kind, "code": codes[0], "severity": severity, **params}
        if record.get("说明"):
            rule["message"] = record["说明"]
        out.append(rule)
    return out


def _semantic(fields: dict[str, dict], settings: dict[str, str], d: _Design) -> dict[str, str]:
    """project_name_field, budget_field, unit_name_field: named in 设置, else found by label."""
    def find(setting: str, words: tuple[str, ...], types: set[str] | None = None) -> str | None:
        named = settings.get(setting)
        if named:
            if named not in fields:
                d.problem(SETTINGS, None, f"{setting}：没有标识为“{named}”的字段")
            return named
        for fid, f in fields.items():
            if any(w in f["label"] for w in words) and (types is None or f["type"] in types):
                return fid
        return None

    out = {}
    project = find("project_name_field", ("项目名称",))
    if project:
        out["project_name_field"] = project
    elif settings.get("family", "project") in {"project", "项目"}:
        d.problem(FIELDS, None, "找不到项目名称字段：请给项目名称单元格写标签“项目名称”，或在「设置」中写明 项目名称字段")
    budget = find("budget_field", ("预算", "资金总额", "总金额", "金额"), {"money"})
    if budget:
        out["budget_field"] = budget
    unit = find("unit_name_field", ("单位名称", "填报单位", "预算单位", "申报单位"))
    if unit:
        out["unit_name_field"] = unit
    return out


def import_design(path: Path, outdir: Path) -> ImportResult:
    """Check the design and write `<outdir>/<模板标识>.yaml` and its layout workbook beside it."""
    wb = _open(Path(path))
    problems: list[DesignProblem] = []
    settings = {}
    d = _Design(wb, None, problems)
    settings = _settings(d)
    form = _form_sheet(wb, settings, problems)
    if form is None:
        raise DesignError(problems)
    d.form = form
    tables, table_cells = _tables(d)
    fields = _fields(d, table_cells)
    rules = _rules(d, fields, tables)
    semantic = _semantic(fields, settings, d)
    if not fields and not tables:
        d.problem(FIELDS, None, "没有任何字段或表格：至少要有一个填写单元格")
    if problems:
        raise DesignError(problems)

    template = settings["template"]
    multi = settings.get("multi_project", "否") in YES
    family = {"项目": "project", "部门": "department"}.get(settings.get("family", ""), settings.get("family") or "project")
    check_column = openpyxl.utils.get_column_letter(form.max_column + 1)
    spec = {
        "template": template, "version": settings.get("version") or "1",
        "title": settings.get("title") or _text(form.cell(row=1, column=1).value) or form.title,
        "family": family, "money_unit": settings.get("money_unit") or "元", "multi_project": multi,
        **semantic,
        "sheet": {"name": settings.get("sheet_name") or ("项目{n}" if multi else form.title)},
        "designed": {"workbook": template.split("/")[1] + ".xlsx", "sheet": form.title, "check_column": check_column},
        "fields": {k: {key: v for key, v in f.items() if key != "_row"} for k, f in fields.items()},
        "tables": {k: {key: v for key, v in t.items() if key != "_row"} for k, t in tables.items()},
        "rules": rules,
    }
    if settings.get("region"):
        spec["region"] = settings["region"]
    for sheet in DEFINITION_SHEETS:
        if sheet in wb.sheetnames:
            del wb[sheet]
    header = (f"# 由 perfxl template import 从 {Path(path).name} 生成：请修改设计工作簿后重新导入，不要直接编辑。\n"
              f"# Generated by perfxl template import from {Path(path).name}; edit the designed workbook and re-import.\n")
    if settings.get("region"):
        header += f"# default-region: {settings['region']}\n"
    text = header + "{% raw %}\n" + yaml.safe_dump(spec, allow_unicode=True, sort_keys=False, width=120) + "{% endraw %}\n"
    return _install(Path(outdir), template, text, wb, fields, tables, rules)


def _install(outdir: Path, template: str, text: str, wb, fields, tables, rules) -> ImportResult:
    """Write into a scratch folder, prove the template loads and builds a form, then move it into place."""
    namespace, name = template.split("/")
    outdir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".perfxl-import-", dir=outdir))
    try:
        folder = scratch / namespace
        folder.mkdir()
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
        wb.save(folder / f"{name}.xlsx")
        _prove(template, scratch)
        target = outdir / namespace
        target.mkdir(exist_ok=True)
        for suffix in (".yaml", ".xlsx"):
            os.replace(folder / f"{name}{suffix}", target / f"{name}{suffix}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return ImportResult(template, target / f"{name}.yaml", target / f"{name}.xlsx", len(fields), len(tables), len(rules))


def _prove(template: str, folder: Path) -> None:
    from perfxl.generator import build_workbook

    try:
        spec = load_spec(template, 2025, templates_dir=folder)
        build_workbook(spec, {"code": "000000", "name": "示例单位", "department": "示例部门"})
    except SpecError as exc:
        raise PerfxlError(f"导入结果无法使用，未导入 (the imported template does not load): {exc}") from None
