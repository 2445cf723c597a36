"""校验问题: every problem of every file that was merged, rejected or excluded, in the clerk's words."""

from __future__ import annotations

from dataclasses import dataclass, field

from perfxl.problems import Problem
from perfxl.records import Seen

from .base import OUTCOME_ZH, Collector, Column, Context, Table, file_name, table

NAME = "校验问题"
FIRST_TITLE = "文件"
SEVERITY_ZH = {"error": "错误", "warning": "提醒"}
ROLLUP_REASONS = ("rollup-conflict", "rollup-unit-conflict", "rollup-other-region")  # decided by the merge


@dataclass
class Problems(Collector):
    ctx: Context
    lines: list[dict] = field(default_factory=list)

    def add(self, s: Seen, checked, sp, who) -> None:
        for q in checked.problems:
            self._line(s, who.unit_name, q)

    def add_set_aside(self) -> None:
        """Files not merged: their problems, and why an excluded file was left out."""
        for s in self.ctx.files:
            if s.outcome in {"duplicate", "superseded", "merged"}:
                continue
            checked = self.ctx.load(s)
            name = self.ctx.who(s, checked).unit_name
            for q in checked.problems:
                self._line(s, name, q)
            if s.reason in ROLLUP_REASONS:  # read, and left out by the roll-up: not 无法读取
                self._line(s, name, Problem("error", s.reason, params={"other": s.duplicate_of, "claimed": s.claimed}))
            elif s.outcome == "excluded":
                expected = self.ctx.year if s.reason == "other-year" else self.ctx.template
                self._line(s, name, Problem("error", s.reason, params={"expected": expected, "found": s.year,
                                                                       "template": s.template}))

    def _line(self, s: Seen, unit_name: str, q: Problem) -> None:
        self.lines.append({"file": file_name(s), "unit_name": unit_name, "sheet": q.sheet, "cell": q.cell,
                           "label": q.label or q.field, "message": q.text(self.ctx.lang), "code": q.code,
                           "severity": SEVERITY_ZH.get(q.severity, q.severity), "outcome": OUTCOME_ZH[s.outcome]})

    def table(self) -> Table:
        self.lines.sort(key=lambda r: r["file"])  # by file; each file's problems keep the rules' order
        return table(NAME, COLUMNS, self.lines)


# The words before the code: a clerk reads 说明, a consolidator filters on 规则.
COLUMNS = [
    Column("文件", "text", "file"), Column("单位名称", "text", "unit_name"), Column("工作表", "text", "sheet"),
    Column("单元格", "text", "cell"), Column("栏目", "text", "label"), Column("严重程度", "text", "severity"),
    Column("说明", "text", "message"), Column("规则", "text", "code"), Column("处理", "text", "outcome"),
]
