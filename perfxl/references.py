"""What a blank declaration form carries from the past (generate --history, --library): the 上年参考 sheet of a
unit that ran projects last year, and an indicator library's choices, typical values, 固化指标 and 指标参考
sheet. perfxl.history and perfxl.library hold the data; this module says it as the form shows it
(formparts.FormExtras, ReferenceSheet), and the generator writes it."""

from __future__ import annotations

from collections import defaultdict

from .comparison import History, PastProject
from .errors import OutputError
from .formparts import FormExtras, ReferenceSheet
from .library import Library, typical_of
from .problems import fmt_number
from .roster import Unit
from .spec import Spec

LAST_YEAR_SHEET = "上年参考"
LIBRARY_SHEET = "指标参考"
LIBRARY_SOURCE_SHEET = "指标库"
CHOICES_PER_LEVEL2 = 60  # a dropdown longer than this is no help
LIBRARY_ROWS = 400
LAST_YEAR_COLUMNS = (("一级指标", 10.0), ("二级指标", 14.0), ("三级指标", 24.0), ("上年指标值", 16.0),
                     ("上年实际完成值", 16.0), ("完成率", 9.0))
LIBRARY_COLUMNS = (("一级指标", 10.0), ("二级指标", 14.0), ("三级指标", 24.0), ("计量单位", 8.0),
                   ("典型值", 26.0), ("使用项目数", 9.0))


def _money(value) -> str:
    return "—" if value is None else f"{fmt_number(value)}"


def _percent(value) -> str:
    return "—" if value is None else f"{value:.1%}"


def last_year_sheet(history: History, unit: Unit, year: int) -> ReferenceSheet | None:
    """上年参考 of `unit` for a form of `year`: each of its projects of the year before, with the budget, the
    execution, the self-evaluation's score and grade, and per indicator the target and what was achieved.
    None for a unit with no project last year."""
    past = sorted(history.of_unit(unit.code, year - 1), key=lambda p: p.name)
    if not past:
        return None
    blocks = []
    for p in past:
        facts = (("上年预算数（万元）", _money(p.budget)), ("上年执行率", _percent(p.execution)),
                 ("上年自评得分", "—" if p.score is None else fmt_number(p.score)),
                 ("自评等级", p.grade or "—"), ("目标审核等级", p.review_grade or "—"),
                 ("来源", "、".join(p.sources)))
        blocks.append((f"{p.name}", facts, tuple(_past_row(p, r) for r in p.rows)))
    return ReferenceSheet(
        LAST_YEAR_SHEET, f"{year - 1}年度项目绩效目标及完成情况（上年参考）",
        f"{unit.name} {year - 1} 年度项目的绩效目标和自评结果，取自财政局的报送台账，仅供参考，不需填写。"
        "延续项目申报时请对照：指标值低于上年实际完成值（成本、时效类高于）时，请说明确定依据。",
        LAST_YEAR_COLUMNS, tuple(blocks))


def _past_row(p: PastProject, row) -> tuple:
    completion = row.completion()
    return (row.level1, row.level2, row.level3, row.target, row.actual or ("（未自评）" if "自评" not in p.sources else ""),
            _percent(completion) if completion is not None else "")


def library_extras(library: Library, spec: Spec) -> FormExtras:
    """An indicator library's part of every blank form of `spec`'s family: 三级 choices per 二级 (the
    hierarchy's own names), each 三级's typical value, the 固化指标 rows and the 指标参考 sheet."""
    table = spec.indicator_table()
    if table is None:
        return FormExtras()
    hierarchy = table.indicator.hierarchy
    entries = sorted(library.of_family(spec.family or ""), key=lambda e: (-e.projects, e.level3))
    by_level2: dict[str, list[str]] = defaultdict(list)
    typical: dict[str, str] = {}
    for e in entries:
        level2 = hierarchy.canonical(e.level2)
        if e.level3 not in by_level2[level2] and len(by_level2[level2]) < CHOICES_PER_LEVEL2:
            by_level2[level2].append(e.level3)
        if e.typical and e.level3 not in typical:
            typical[e.level3] = typical_of(e)
    required = []
    for e in sorted((e for e in entries if e.required), key=lambda e: e.row):
        row = (hierarchy.canonical(e.level1), hierarchy.canonical(e.level2), e.level3)
        if hierarchy.levels and row[1] not in hierarchy.level2_of(row[0]):
            # prefilled, it would be an error on every form that no unit can put right
            known = hierarchy.level2_of(row[0])
            should = f"应为 {'、'.join(known)}" if known else f"一级指标应为 {'、'.join(hierarchy.levels)}"
            raise OutputError(f"指标库 {library.source}「{LIBRARY_SOURCE_SHEET}」第 {e.row} 行：固化指标“{e.level3}”的"
                              f"二级指标“{e.level2}”不属于一级指标“{e.level1}”（{should}），请改正后再生成")
        if row not in required:  # a row the bureau left twice is prefilled once
            required.append(row)
    required = tuple(required)
    shown = sorted(entries, key=lambda e: (e.level1, e.level2, -e.projects, e.level3))[:LIBRARY_ROWS]
    rows = tuple((e.level1, e.level2, e.level3 + ("（固化）" if e.required else ""), e.unit, typical_of(e),
                  str(e.projects) if e.projects else "") for e in shown)
    sheet = ReferenceSheet(
        LIBRARY_SHEET, "常用绩效指标参考（指标库）",
        "财政局指标库中往年审核为优、良的项目所用的指标及其典型值，仅供参考，不需填写；标“（固化）”的为必设指标，"
        "已预填在绩效指标表中，请填写指标值。三级指标可从下拉列表选择，也可直接填写。",
        LIBRARY_COLUMNS, (("常用指标", (), rows),) if rows else ())
    return FormExtras(tuple((k, tuple(v)) for k, v in by_level2.items() if v), tuple(typical.items()), required,
                      (sheet,) if rows else ())
