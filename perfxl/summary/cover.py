"""汇总: the cover a leader reads first — title, the accounting line, key figures, two native charts —
above the table per 地区/主管部门 (which is also 汇总.csv)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from perfxl.rounds import summary_title

from .about import accounting_line
from .base import OFF_ROSTER, Block, Chart, Column, Context, Cover, Table, Tally, places, table
from .review import GRADES

NAME = "汇总"
SAMPLED_FORMS = 20  # forms read to learn the region a national round was issued by
FIRST_TITLE = "地区"
DEPARTMENTS = "按主管部门"


def grade_tally(grades: Counter, graded: str, figures: tuple = ()) -> Tally:
    return Tally(f"{graded}等级", "等级", "项目数", tuple((grade, grades.get(grade, 0)) for _, grade, _ in GRADES),
                 figures)


def build(ctx: Context, counts: dict, per_group: dict[tuple, Counter], funding_labels: list[str],
          tally: Tally) -> Table:
    m = ctx.money_suffix
    columns = [Column("地区", "text", "region"), Column("主管部门", "text", "department"),
               Column("应报单位数", "count", "expected"), Column("已报单位数", "count", "submitted"),
               Column("通过校验", "count", "valid"), Column("有错误", "count", "errors"),
               Column("未报送", "count", "missing"), Column("项目数", "count", "projects"),
               Column("预算金额合计" + m, "money", "budget")]
    columns += [Column(label + m, "money", _group_money(label)) for label in funding_labels]
    lines = []
    for (region, department), c in sorted(per_group.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        lines.append({"region": region, "department": department, **{k: c[k] for k in (
            "expected", "submitted", "valid", "errors", "missing", "projects")},
            "budget": float(c.get("budget", 0.0)), "money": c})
    sheet = table(NAME, columns, lines, totals=True)
    sheet.cover = _cover(ctx, counts, lines, tally)
    levels = _levels(ctx, lines, m)
    if levels is not None:
        sheet.cover.tables.append(levels)
    return sheet


LEVELS = "分级合计"
_SUMMED = ("expected", "submitted", "valid", "errors", "missing", "projects", "budget")


def _levels(ctx: Context, lines: list[dict], m: str) -> Table | None:
    """The totals per level of the region hierarchy (区县 → 市 → the whole merge), when the roster names
    regions: every 市 (a region's parent, from the roster's 上级地区 column) and every 区县 under it.
    Printed above the table per 主管部门."""
    known = places(ctx.units)  # a region is known by its whole path: two 高新区 under two 市 stay two
    parents = any(parent for parent, _ in known.values())
    by_region: dict[tuple[str, str], Counter] = {}
    off_roster = Counter()  # units the roster does not name: under no 市 or 区县 (base.Context.who)
    for line in lines:
        region = line["region"] or ""
        totals = off_roster if region == OFF_ROSTER else by_region.setdefault(known.get(region, ("", region)),
                                                                                   Counter())
        for k in _SUMMED:
            totals[k] += line[k]
    if len([r for r in by_region if r[1]]) < 2 and not parents:
        return None
    by_parent: dict[str, Counter] = {}
    for (parent, _), totals in by_region.items():
        by_parent.setdefault(parent, Counter()).update(totals)
    whole = Counter(off_roster)
    for totals in by_region.values():
        whole.update(totals)
    rows = []
    for parent in sorted(by_parent, key=lambda p: (p == "", p)):
        if parents:
            rows.append({"level": "市", "name": parent or "（未注明上级地区）", "parent": "", **by_parent[parent]})
        rows += [{"level": "区县" if parents else "地区", "name": region or "（未注明地区）", "parent": parent,
                  **by_region[(parent, region)]} for up, region in sorted(by_region) if up == parent]
    if off_roster:
        rows.append({"level": "名单外", "name": OFF_ROSTER, "parent": "", **off_roster})
    rows.append({"level": "合计", "name": "", "parent": "", **whole})
    columns = [Column("层级", "text", "level"), Column("地区", "text", "name")] + (
        [Column("上级地区", "text", "parent")] if parents else []) + [
        Column(title, "count", key) for title, key in (
            ("应报单位数", "expected"), ("已报单位数", "submitted"), ("通过校验", "valid"), ("有错误", "errors"),
            ("未报送", "missing"), ("项目数", "projects"))] + [Column("预算金额合计" + m, "money", "budget")]
    return table(LEVELS, columns, [{k: (float(v) if k == "budget" else v) for k, v in r.items()} for r in rows])

def _group_money(label):
    return lambda r: float(r["money"].get(label, 0.0))


def _regions(ctx: Context) -> list[str]:
    """The region a summary is of, named one way in every round: a local template's own region (绵阳市); for a
    national template, the region its forms were issued by (a follow-up round's forms carry the region of the
    local declaration they were prefilled from; one form of each template is read to learn it), unless that is
    just a unit's own region; else the roster's (its 上级地区, else its regions)."""
    regions = {sp.region for sp in ctx.specs.values() if sp.region and sp.region != "全国"}
    below = {u.region for u in ctx.units or []}  # a form named after its unit's own region says nothing above it
    for key, sp in ctx.specs.items():
        if sp.region in ("", "全国"):
            sample = [s for s in ctx.merged if (s.template, s.year) == key][:SAMPLED_FORMS]
            found = {ctx.load(s).region for s in sample}
            if len(found) == 1 and (region := found.pop()) and region != "全国" and region not in below:
                regions.add(region)  # forms of several regions: named by the roster, not by one of them
    return sorted(regions) or sorted({u.parent or u.region for u in ctx.units or [] if u.region})


def _cover(ctx: Context, counts: dict, lines: list[dict], tally: Tally) -> Cover:
    regions = _regions(ctx)
    years = sorted({s.year for s in ctx.merged if s.year}) or ([ctx.year] if ctx.year else [])
    name = summary_title((sp.round for sp in ctx.specs.values()), "").removeprefix("年")
    title = (f"{'、'.join(regions[:3])}{'等' if len(regions) > 3 else ''}"
             f"{'、'.join(map(str, years))}{'年' if years else ''}{name}")
    total = {k: sum(line[k] for line in lines) for k in ("expected", "submitted", "valid", "errors", "missing",
                                                          "projects", "budget")}
    figures = [("应报单位", total["expected"], "count"), ("已报单位", total["submitted"], "count"),
               ("未报送", total["missing"], "count"), ("通过校验", total["valid"], "count"),
               ("有错误", total["errors"], "count"), ("项目数", total["projects"], "count"),
               ("预算金额合计" + ctx.money_suffix, total["budget"], "money"),
               ("指标数", counts["indicators"], "count"), *tally.figures]
    blocks = [Block(tally.name, [(tally.kind, "text"), (tally.counted, "count")], [list(c) for c in tally.counts])]
    charts = [Chart("bar", "各主管部门报送情况", DEPARTMENTS, 1, (("通过校验", 4), ("有错误", 5), ("未报送", 6)),
                    stacked=True),
              Chart("column", f"{tally.name}分布（{tally.counted}）", tally.name, 0, ((tally.counted, 1),))]
    return Cover(title=title,
                 lines=[f"汇总时间 {datetime.now().strftime('%Y-%m-%d %H:%M')}；金额单位 {ctx.money_unit}",
                        "文件核对：" + accounting_line(counts)],
                 figures=figures, blocks=blocks, charts=charts, caption=DEPARTMENTS)
