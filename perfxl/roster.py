"""The roster: which units a campaign expects, read from CSV (UTF-8 with or without BOM, or GB18030 as
Chinese Excel saves it) or XLSX. Used by generate (one form per unit) and merge (who is missing)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from .errors import RosterError

HEADER_ALIASES = {
    "code": "code", "单位编码": "code", "单位代码": "code", "编码": "code",
    "name": "name", "单位名称": "name", "名称": "name",
    "department": "department", "主管部门": "department", "部门": "department",
    "region": "region", "地区": "region", "区域": "region", "区县": "region",
    "parent": "parent", "上级地区": "parent", "所属市": "parent", "市": "parent",
    "projects": "projects", "项目数": "projects",
}
REQUIRED = ("code", "name", "department")
CHINESE_NAMES = {"code": "单位编码", "name": "单位名称", "department": "主管部门", "region": "地区",
                 "parent": "上级地区", "projects": "项目数"}  # a column's name in a roster with Chinese headers
# The longest a roster's texts may be, in characters. Each goes on every form and sheet that names the
# unit (the stamp, 填表说明's line, file names, the summary): a 3,000-character name made a 填表说明 row
# 960 pt tall, and one of 32,760 a line past a cell's 32,767 that stopped the whole round at that unit.
# The longest real names (区县 units with their 中心 and 站) are under 60.
ROSTER_TEXT_CHARS = {"code": 64, "name": 200, "department": 200, "region": 100, "parent": 100}


@dataclass(frozen=True, slots=True)  # 100,000 of them at province scale
class Unit:
    code: str
    name: str
    department: str
    region: str = ""
    projects: int | None = None
    parent: str = ""  # the region's parent (区县 → 市): the summary totals each level
    prefill: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The unit as data (a merge keeps its roster so): by hand, not dataclasses.asdict, which copies
        deeply and costs a tenth of a second a 10,000-unit roster."""
        return {"code": self.code, "name": self.name, "department": self.department, "region": self.region,
                "projects": self.projects, "parent": self.parent, "prefill": dict(self.prefill)}

    def as_params(self) -> dict[str, str]:
        return {"code": self.code, "name": self.name, "department": self.department}


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _rows_from_csv(path: Path) -> list[list[str]]:
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes almost anything
        raise RosterError(f"名单文件编码无法识别 (roster is neither UTF-8 nor GB18030): {path}")
    return [row for row in csv.reader(io.StringIO(text))]


def _rows_from_xlsx(path: Path) -> list[list[str]]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for bad files
        raise RosterError(f"名单文件无法读取 (cannot read roster workbook) {path}: {exc}") from None
    try:
        ws = wb.worksheets[0]
        return [[_text(v) for v in row] for row in ws.iter_rows(values_only=True)]
    finally:
        wb.close()


def read_roster(path: Path) -> list[Unit]:
    path = Path(path)
    if path.is_dir():
        raise RosterError(f"名单应为 CSV 或 XLSX 文件，{path} 是文件夹 (the roster is a folder)")
    if not path.is_file():
        raise RosterError(f"名单文件不存在 (roster not found): {path}")
    suffix = path.suffix.lower()
    rows = _rows_from_xlsx(path) if suffix in {".xlsx", ".xlsm"} else _rows_from_csv(path)
    rows = [r for r in rows if any(_text(c) for c in r)]
    if not rows:
        raise RosterError(f"名单为空 (roster is empty): {path}")
    header = [HEADER_ALIASES.get(_text(h).lower(), HEADER_ALIASES.get(_text(h), _text(h))) for h in rows[0]]
    missing = [c for c in REQUIRED if c not in header]
    chinese = _in_chinese([_text(h) for h in rows[0]])
    if missing:
        raise RosterError(_missing_columns(missing, [_text(h) for h in rows[0]], path, chinese))
    projects_column = CHINESE_NAMES["projects"] if chinese else "projects"
    units: list[Unit] = []
    seen: dict[str, int] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        values = {h: _text(row[i]) if i < len(row) else "" for i, h in enumerate(header) if h}
        code, name = values.get("code", ""), values.get("name", "")
        if not code or not name:
            raise RosterError(f"名单第 {line_no} 行缺少单位编码或名称 (row {line_no}: code and name are required)")
        for key, cap in ROSTER_TEXT_CHARS.items():
            if len(values.get(key, "")) > cap:
                raise RosterError(f"名单第 {line_no} 行「{CHINESE_NAMES[key]}」过长：{len(values[key]):,} 字，上限 {cap} 字 "
                                  f"(row {line_no}: {key} is longer than {cap} characters)")
        if code in seen:
            raise RosterError(f"单位编码重复 (duplicate unit code) {code!r}: rows {seen[code]} and {line_no}")
        seen[code] = line_no
        projects = values.get("projects") or ""
        try:
            n_projects = int(float(projects)) if projects else None
        except ValueError:
            raise RosterError(f"名单第 {line_no} 行 {projects_column} 不是整数：{projects!r} "
                              f"(row {line_no}: projects={projects!r})") from None
        if n_projects is not None and not 1 <= n_projects <= 200:
            raise RosterError(f"名单第 {line_no} 行 {projects_column} 应在 1–200 之间：{n_projects} "
                              f"(row {line_no}: projects={n_projects})")
        prefill = {k: v for k, v in values.items() if k not in HEADER_ALIASES.values() and v != ""}
        units.append(Unit(code=code, name=name, department=values.get("department", ""),
                          region=values.get("region", ""), projects=n_projects, prefill=prefill,
                          parent=values.get("parent", "")))
    return units


def _in_chinese(headers: list[str]) -> bool:
    """Whether a roster names its columns in Chinese: it is then told of them by their Chinese names."""
    return any("\u4e00" <= ch <= "\u9fff" for h in headers for ch in h)


def _missing_columns(missing: list[str], headers: list[str], path: Path, chinese: bool) -> str:
    """Which required columns a roster lacks, named as its own headers name columns (a roster headed in
    Chinese is told 主管部门, not department), with the headers accepted for each and the ones it has."""
    named = [CHINESE_NAMES[c] if chinese else c for c in missing]
    accepted = "；".join(f"「{n}」可写作 {_accepted(c, chinese)}" for n, c in zip(named, missing))
    has = "、".join(h for h in headers if h) or "（无）"
    return (f"名单缺少{''.join(f'「{n}」' for n in named)}列（{accepted}）。{path} 的第一行是：{has} "
            f"(roster is missing column(s): {', '.join(missing)})")


def _accepted(column: str, chinese_first: bool) -> str:
    """The headers read as this column, those in the roster's own language first: 主管部门、部门 或 department."""
    names = [h for h, c in HEADER_ALIASES.items() if c == column]
    names.sort(key=lambda h: h.isascii() == chinese_first)
    return "、".join(names[:-1]) + " 或 " + names[-1]
