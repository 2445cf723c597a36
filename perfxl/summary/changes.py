"""变更记录: what a resubmission changed against the version it superseded — fields and indicator values."""

from __future__ import annotations

from perfxl.records import CheckedForm, Seen

from .base import Column, Context, Table, file_name, table

NAME = "变更记录"
FIRST_TITLE = "单位名称"

COLUMNS = [
    Column("单位名称", "text", "unit_name"), Column("工作表", "text", "sheet"), Column("项目名称", "text", "project"),
    Column("内容", "text", "what"), Column("原值", "text", "old"), Column("新值", "text", "new"),
    Column("单元格", "text", "cell"), Column("原文件", "text", "old_file"), Column("新文件", "text", "new_file"),
]


def build(ctx: Context) -> Table:
    by_path = {s.path: s for s in ctx.files}
    lines: list[dict] = []
    for s in ctx.files:
        if s.outcome == "superseded":
            newer = by_path[s.duplicate_of]
            lines.extend(_changes(ctx.load(s), ctx.load(newer), s, newer, ctx.who(newer).unit_name,
                                  ctx.spec_of(newer)))
        elif s.reason in _CONFLICTS and s.path < s.duplicate_of:  # each pair once
            lines.append({"unit_name": s.unit_name or "", "sheet": "", "project": "；".join(s.project_names),
                          "what": _CONFLICTS[s.reason].format(claimed=s.claimed[:16]), "old": "", "new": "", "cell": "",
                          "old_file": file_name(s), "new_file": file_name(by_path[s.duplicate_of])
                          if s.duplicate_of in by_path else s.duplicate_of})
        elif s.reason == "rollup-other-region":
            lines.append({"unit_name": s.unit_name or "", "sheet": "", "project": "；".join(s.project_names),
                          "what": f"下级上报了不属于其地区的单位（{s.duplicate_of}），未汇总", "old": "", "new": "",
                          "cell": "", "old_file": file_name(s), "new_file": ""})
    return table(NAME, COLUMNS, lines)


_CONFLICTS = {"rollup-conflict": "下级上报数据冲突：两份声称来自同一原文件（sha256 {claimed}…），数据不同，均未汇总",
              "rollup-unit-conflict": "下级上报数据冲突：同一单位在两个下级的上报中数据不同，均未汇总"}


def _changes(old: CheckedForm, new: CheckedForm, old_seen: Seen, new_seen: Seen, unit_name: str, spec) -> list[dict]:
    rows = []

    def line(sheet, project, what, before, after, cell=""):
        rows.append({"unit_name": unit_name, "sheet": sheet, "project": project, "what": what, "old": before,
                     "new": after, "cell": cell, "old_file": file_name(old_seen),
                     "new_file": file_name(new_seen)})

    old_projects = {p.sheet: p for p in old.projects}
    for p in new.projects:
        before = old_projects.get(p.sheet)
        if before is None:
            line(p.sheet, p.name, "新增项目", "", p.name)
            continue
        for fid, value in p.values.items():
            if before.values.get(fid) != value:
                line(p.sheet, p.name, spec.fields[fid].label, _text(before.values.get(fid)), _text(value),
                     p.cells.get(fid, ""))
        old_ind = {(r.level1, r.level2, r.level3): r for r in before.indicators}
        for r in p.indicators:
            o = old_ind.pop((r.level1, r.level2, r.level3), None)
            for vid, text in r.texts.items():
                old_text = o.texts.get(vid, "") if o else ""
                if old_text != text:
                    line(p.sheet, p.name, f"指标 {r.level1}/{r.level2}/{r.level3}", old_text, text, r.cells.get(vid, ""))
        for key, gone in old_ind.items():
            line(p.sheet, p.name, f"删除指标 {'/'.join(key)}", "；".join(gone.texts.values()), "")
    return rows


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)
