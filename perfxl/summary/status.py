"""报送情况: every roster unit (handed in or not) and every unit that sent something though not on the roster.
Also counts per 地区/主管部门 for the cover."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from perfxl.records import Seen
from perfxl.roster import Unit

from .base import STATUS_ZH, Column, Context, Table, file_name, place, received, table

NAME = "报送情况"
FIRST_TITLE = "地区"
HANDED_IN, MISSING, OFF_ROSTER = "已报送", "未报送", "已报送（名单外）"
NOT_ISSUED = "无申报，未下发"  # a follow-up round: the unit declared nothing, so it was sent no form to hand in

COLUMNS = [
    Column("地区", "text", "region"), Column("主管部门", "text", "department"), Column("单位编码", "text", "unit_code"),
    Column("单位名称", "text", "unit_name"), Column("报送状态", "text", "state"), Column("校验状态", "text", "status"),
    Column("文件", "text", "files"), Column("收到时间", "text", "received"), Column("收到版本数", "count", "versions"),
    Column("错误数", "count", "errors"), Column("提醒数", "count", "warnings"),
]


@dataclass
class StatusLine:
    region: str
    department: str
    unit_code: str
    unit_name: str
    state: str
    status: str = ""
    files: str = ""
    received: str = ""
    versions: int = 0
    errors: int | None = None
    warnings: int | None = None


@dataclass
class Status:
    ctx: Context
    lines: list[StatusLine] = field(default_factory=list)
    per_group: dict[tuple, Counter] = field(default_factory=lambda: defaultdict(Counter))
    missing: list[Unit] = field(default_factory=list)

    def build(self) -> Table:
        by_unit: dict[str, list[Seen]] = defaultdict(list)
        for s in self.ctx.files:
            if s.outcome in {"merged", "superseded"} and (s.unit_code or s.unit_name):
                by_unit[s.unit_code or s.unit_name].append(s)
        issued = self.ctx.units_issued()  # None: every roster unit is expected (a declaration round)
        for u in self.ctx.units or []:
            sent = by_unit.pop(u.code, [])
            chosen = [s for s in sent if s.outcome == "merged"]
            region = place(u)
            group = self.per_group[(region, u.department)]
            if issued is not None and u.code not in issued and not sent:
                self.lines.append(StatusLine(region, u.department, u.code, u.name, NOT_ISSUED))
                continue
            group["expected"] += 1
            if not chosen:
                group["missing"] += 1
                self.missing.append(u)
                self.lines.append(StatusLine(region, u.department, u.code, u.name, MISSING))
                continue
            group["submitted"] += 1
            bad = any(c.status == "errors" for c in chosen)
            group["errors" if bad else "valid"] += 1
            newest = max(chosen, key=lambda x: x.mtime_ns)
            self.lines.append(StatusLine(region, u.department, u.code, u.name, HANDED_IN,
                                         STATUS_ZH["errors" if bad else newest.status],
                                         "；".join(file_name(x) for x in chosen), received(newest.mtime_ns),
                                         len(sent), sum(x.errors for x in chosen), sum(x.warnings for x in chosen)))
        for _, sent in sorted(by_unit.items()):
            chosen = [s for s in sent if s.outcome == "merged"]
            newest = max(chosen or sent, key=lambda x: x.mtime_ns)
            who = self.ctx.sender(newest)
            group = self.per_group[(who.region, who.department)]
            if self.ctx.units is None:
                group["expected"] += 1
            group["submitted"] += 1
            group["errors" if newest.status == "errors" else "valid"] += 1
            self.lines.append(StatusLine(who.region, who.department, who.unit_code, who.unit_name,
                                         OFF_ROSTER if self.ctx.units is not None else HANDED_IN,
                                         STATUS_ZH[newest.status], "；".join(file_name(x) for x in chosen),
                                         received(newest.mtime_ns), len(sent), newest.errors, newest.warnings))
        order = {MISSING: 0, NOT_ISSUED: 2}
        self.lines.sort(key=lambda r: (order.get(r.state, 1), str(r.region), str(r.department), str(r.unit_code)))
        return table(NAME, COLUMNS, self.lines)
