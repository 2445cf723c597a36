"""历史对比 and 历史匹配: a declaration merge's targets against earlier years (`--history`), this year's peers
and the bureau's indicator library (`--library`), from perfxl.comparison.

A project's own comparisons (with its past, with the library) are made where the form is read, form by
form; the peers need every form at once, so once every form is seen `Comparison.compare` adds theirs, and
目标审核 takes the findings (points off, mostly under 适当性). They are the review's, not the files' own
problems: 校验问题 does not list them, and a file's 提醒 do not count them. 历史对比 lists every finding with
its reference value; 历史匹配 lists every declared project with the
past it was matched to, or none.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from perfxl.comparison import (
    DeclaredProject,
    DeclaredRow,
    Finding,
    Match,
    RowFacts,
    one_project,
    outside_peers,
    peer_finding,
)
from perfxl.limits import collector_paused
from perfxl.problems import Problem
from perfxl.rounds import DECLARE
from perfxl.rules.indicators import KIND_MEMO_CHARS, indicator_kind, usual_direction
from perfxl.values import parse_target

from .base import Collector, Column, Context, Table, table_made_later

NAME = "历史对比"
FIRST_TITLE = "地区"
MATCHES = "历史匹配"
MATCHES_FIRST_TITLE = "地区"
BASIS_LABEL = "确定依据"  # a column whose label holds this (指标值确定依据), or whose id is basis
TEXT_FIELDS = ("annual_goal", "long_term_goal", "goal", "annual_target", "goal_expected", "explanation", "remarks")


# Between the parts of an indicator's key kept for the peers: the parts are normalised to letters, digits
# and %, so no part holds it; and printable, so a kept part's JSON holds it as one character, not six.
_KEY_SEP = "|"


def basis_column(sp) -> str | None:
    table_ = sp.indicator_table()
    if table_ is None:
        return None
    return next((c.id for c in table_.columns if c.id == "basis" or BASIS_LABEL in c.label), None)


@lru_cache(maxsize=65536)  # the same indicators recur in thousands of forms (a collector lives for one form)
def _named(sp, level1: str, level2: str, level3: str) -> tuple[str, str, str]:
    """A row's 一级 and 二级 as its template names them, and the direction usual for its kind of indicator."""
    hierarchy = sp.indicator_table().indicator.hierarchy
    return (hierarchy.canonical(level1), hierarchy.canonical(level2),
            usual_direction(indicator_kind(sp, level1, level2, level3), level3) or "")


@dataclass
class Comparison(Collector):
    """What each declared project gives on its own (only when the merge compares: --history or a library's
    固化指标): its match with its past, its findings against that past and the library, worked out where the
    form is (a merge's workers, and kept with the form's part), and the facts of its rows that have a value
    for the peers, which are compared once every form is seen (`compare`)."""

    ctx: Context
    lines: list[dict] = field(default_factory=list)

    def add(self, s, checked, sp, who) -> None:
        if not self.ctx.compares or sp.round.stage != DECLARE:
            return
        table_ = sp.indicator_table()
        main = table_.indicator.main if table_ is not None else None
        basis = basis_column(sp)
        for p in checked.projects:
            rows = []
            if main is not None:
                for n, r in enumerate(p.indicators, start=1):
                    texts = (r.level1, r.level2, r.level3)
                    level1, level2, usual = (_named if sum(map(len, texts)) <= KIND_MEMO_CHARS
                                             else _named.__wrapped__)(sp, *texts)  # long texts: not kept
                    rows.append(DeclaredRow(n, r.cells.get(main, ""), level1, level2, r.level3,
                                            r.texts.get(main, ""), r.texts.get(basis, "") if basis else "", usual))
            text = " ".join(str(p.values.get(f) or "") for f in TEXT_FIELDS)
            project = DeclaredProject(s.path, p.sheet, checked.year or self.ctx.year or 0, who.unit_code,
                                      who.unit_name, who.department, who.region, p.name,
                                      p.cells.get(sp.project_name_field or "", ""), str(p.values.get("project_code") or ""),
                                      text, rows, sp.family or "")
            match, found, facts = one_project(project, self.ctx.history, self.ctx.library or None)
            valued = [f for f in facts if f.value is not None]
            self.lines.append({
                "p": [project.file, project.sheet, project.year, project.unit_code, project.unit_name,
                      project.department, project.region, project.name, project.name_cell],
                "m": _match_data(match),
                "f": [[f.problem.code, f.problem.cell, f.problem.params, list(f.row) if f.row else None,
                       f.reference, f.basis] for f in found],
                # for the peers: each row's indicator as one string and its value; what 历史对比 shows of the
                # rows (place, cell, 二级, 三级, target) in one string for the project, made into rows only for
                # a value outside its peers' range
                "r": [[_KEY_SEP.join(f.key), f.value] for f in valued],
                "d": json.dumps([(r.row, r.cell, r.level2, r.level3, r.target) for r in (f.row for f in valued)],
                                ensure_ascii=False, separators=(",", ":"))})

    def compare(self) -> Compared:
        """The peers' pass, now that every form is seen, and what 目标审核 needs of every finding: their codes
        per (file, sheet), counted from the kept lines. The findings and matches themselves are made only
        when 历史对比 and 历史匹配 are written (`Compared.made`), perhaps in a helper process: a row's details
        are made into objects only for a value outside its peers' range, and a province's merge holds
        millions of rows, few of them outliers."""
        if not self.ctx.compares:
            return Compared({}, 0, lambda: ([], []))
        lines, self.lines = self.lines, []
        with collector_paused():
            codes: dict[tuple[str, str], Counter] = defaultdict(Counter)
            where, units, keys, values = [], [], [], []  # every valued row: its project and place, unit, key, value
            count = 0
            for n, line in enumerate(lines):
                file, sheet, _, unit_code = line["p"][:4]
                if line["f"]:
                    codes[(file, sheet)].update(f[0] for f in line["f"])
                    count += len(line["f"])
                valued = line.pop("r")  # not kept for the findings: only the outliers' are (below)
                where.extend((n, i) for i in range(len(valued)))
                units.extend([unit_code] * len(valued))
                keys.extend(key for key, _ in valued)
                values.extend(value for _, value in valued)
            # Each value outside its peers' range with what its finding needs, picked out now: the lists of
            # every valued row are let go, and a helper forked to make the findings reads only these.
            outliers = [(*where[index], keys[index], values[index], low, high, median, others)
                        for index, low, high, median, others in outside_peers(units, keys, values)]
            del where, units, keys, values
            for n, *_ in outliers:
                file, sheet = lines[n]["p"][:2]
                codes[(file, sheet)]["peer-outlier"] += 1
            count += len(outliers)
        history = self.ctx.history is not None

        def made() -> tuple[list[MatchLine], list[Finding]]:
            with collector_paused():
                matches, findings, projects = [], [], []
                for line in lines:
                    project = DeclaredProject(*line["p"], "", "", [])
                    projects.append(project)
                    if history:
                        matches.append(MatchLine(project, *line["m"]))
                    for code, cell, params, row, reference, basis in line["f"]:
                        findings.append(Finding(project, Problem("warning", code, sheet=project.sheet, cell=cell,
                                                                 field="indicators", label="绩效指标", params=params),
                                                DeclaredRow(*row) if row else None, reference, basis))
                details: dict[int, list] = {}
                for n, i, key, value, low, high, median, others in outliers:
                    if n not in details:
                        details[n] = json.loads(lines[n]["d"])
                    row, cell, level2, level3, target = details[n][i]
                    declared = DeclaredRow(row, cell, "", level2, level3, target)
                    facts = RowFacts(declared, key, parse_target(declared.target), value, None)
                    findings.append(peer_finding(projects[n], facts, low, high, median, others))
            return matches, findings

        return Compared(dict(codes), count, made)


@dataclass
class Compared:
    """What comparing gives, once every form is seen: each (file, sheet)'s finding codes (what 目标审核 takes
    off) and how many findings there are, at once; the findings and matches themselves from `made()`, worked
    out once, when 历史对比 and 历史匹配 are written (in whichever process writes them)."""

    codes: dict[tuple[str, str], Counter]
    count: int
    make: Callable[[], tuple[list[MatchLine], list[Finding]]]
    _made: tuple | None = field(default=None, repr=False)

    def made(self) -> tuple[list[MatchLine], list[Finding]]:
        if self._made is None:
            self._made = self.make()
        return self._made


@dataclass
class MatchLine:
    """历史匹配's line of one declared project: what it was matched to, and last year's figures."""

    project: DeclaredProject
    how: str
    last_name: str | None = None
    last_budget: float | None = None
    last_execution: float | None = None
    last_score: float | None = None
    last_grade: str | None = None
    rows_matched: int | None = None
    dropped: int | None = None
    before: str = ""


def _match_data(m: Match) -> list:
    if m.last is None:
        return [m.how, None, None, None, None, None, None, None, ""]
    return [m.how, m.last.name, m.last.budget, m.last.execution, m.last.score, m.last.grade, m.rows_matched,
            len(m.dropped), "有" if m.before_key is not None else "无"]


FINDING_COLUMNS = [
    Column("地区", "text", lambda f: f.project.region), Column("主管部门", "text", lambda f: f.project.department),
    Column("单位名称", "text", lambda f: f.project.unit_name), Column("项目名称", "text", lambda f: f.project.name),
    Column("二级指标", "text", lambda f: f.row.level2 if f.row else f.problem.params.get("level2", "")),
    Column("三级指标", "text", lambda f: f.row.level3 if f.row else f.problem.params.get("level3", "")),
    Column("本年指标值", "text", lambda f: f.row.target if f.row else "（未设置）"),
    Column("参考值", "text", "reference"), Column("参考依据", "text", "basis"),
    Column("发现", "text", lambda f: f.problem.text("zh")),
    Column("规则", "text", lambda f: f.problem.code),
    Column("位置", "text", lambda f: f"{f.project.sheet}!{f.problem.cell}" if f.problem.cell else f.project.sheet),
]


MATCH_COLUMNS = [
    Column("地区", "text", lambda m: m.project.region), Column("主管部门", "text", lambda m: m.project.department),
    Column("单位名称", "text", lambda m: m.project.unit_name), Column("项目名称", "text", lambda m: m.project.name),
    Column("匹配方式", "text", lambda m: m.how or "无历史（新项目，或项目名称已改）"),
    Column("上年项目名称", "text", "last_name"), Column("上年预算数（万元）", "money", "last_budget"),
    Column("上年执行率", "percent", "last_execution"), Column("上年自评得分", "score", "last_score"),
    Column("上年自评等级", "text", "last_grade"), Column("延续指标数", "count", "rows_matched"),
    Column("未延续的上年指标", "count", "dropped"), Column("前年", "text", "before"),
]


def tables(ctx: Context, compared: Compared) -> list[Table]:
    """历史对比 and 历史匹配. Their rows are made from the findings and matches when first read, and nothing
    else in the workbook waits on them: they may be written apart (perfxl.report), beside the others."""
    if not ctx.compares:
        return []

    def findings() -> list[Finding]:
        return sorted(compared.made()[1], key=lambda f: (f.project.region, f.project.department,
                                                         f.project.unit_name, f.project.name,
                                                         f.row.row if f.row else 0, f.problem.code))

    def matches() -> list[MatchLine]:
        return sorted(compared.made()[0], key=lambda m: (m.project.region, m.project.department,
                                                         m.project.unit_name, m.project.name))

    note = ("本年指标与往年台账（见说明）、同类单位及指标库比较的发现，均为提醒，已计入目标审核扣分；"
            "参考值为上年实际完成值、上年指标值、同类单位中位数或指标库典型值。")
    out = [table_made_later(NAME, FINDING_COLUMNS, findings, note=note, paper="A3", apart=True)]
    if ctx.history is not None:
        out.append(table_made_later(MATCHES, MATCH_COLUMNS, matches, paper="A3", apart=True,
                                    note="项目按项目编码、否则按同一单位内规范化后的项目名称（忽略年份、空格和标点）与上年匹配；"
                                         "指标按二级指标、规范化后的三级指标名称和计量单位匹配。"))
    return out
