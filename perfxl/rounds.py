"""The rounds of a budget year, in one place.

A template declares which round its forms belong to (`family:` in its YAML, a key of ROUNDS). A round is
what the code asks about a form instead of comparing bare strings: its stage (申报, 监控, 自评; 审核 is the
review of the 申报 round's forms, not a form of its own), its subject (项目 or 部门整体), the round whose
ledger prefills it, the template a bureau uses by default, and its words (the summary's title and file
name, what 应报 counts).

Adding a round is one entry here, its template, and (where it scores or summarises differently) its rule
kind and summary sheet; everything that asks `spec.round.stage` or `spec.round.prefilled_from` follows.
"""

from __future__ import annotations

from dataclasses import dataclass

PROJECT, DEPARTMENT = "项目", "部门整体"
DECLARE, MONITOR, SELFEVAL, ADJUST = "申报", "监控", "自评", "调整"


@dataclass(frozen=True)
class Round:
    key: str  # what a template's `family:` says
    stage: str  # DECLARE, ADJUST, MONITOR or SELFEVAL
    subject: str  # PROJECT or DEPARTMENT
    default_template: str
    summary_name: str  # the summary workbook's name after the year: 2021年项目支出绩效目标申报汇总表
    prefilled_from: str | None = None  # the key of the round whose ledger prefills this round's forms
    groups_file: str | None = None  # where a self-evaluation's 一级 → scoring group mapping and points are

    @property
    def followup(self) -> bool:
        """Prefilled from a ledger and checked against what was issued (perfxl.issued)."""
        return self.prefilled_from is not None

    @property
    def declaration(self) -> bool:
        return self.stage == DECLARE

    @property
    def expected(self) -> str:
        """What 应报 counts in the summary of this round."""
        return "名单上的单位" if not self.followup else "下发了表的单位（没有申报的单位不下发，不计入应报）"

    @property
    def subject_label(self) -> str:
        """How a summary names one form's subject: 项目名称, or 部门名称 for a whole department."""
        return "部门名称" if self.subject == DEPARTMENT else "项目名称"

    def summary_title(self, year: int | str) -> str:
        return f"{year}年{self.summary_name}"


ROUNDS: dict[str, Round] = {r.key: r for r in (
    Round("project", DECLARE, PROJECT, "national/project", "项目支出绩效目标申报汇总表"),
    Round("department", DECLARE, DEPARTMENT, "yancheng/department", "部门整体绩效目标申报汇总表"),
    Round("adjust", ADJUST, PROJECT, "national/adjust", "项目支出绩效目标调整汇总表", prefilled_from="project"),
    Round("monitor", MONITOR, PROJECT, "national/monitor", "项目支出绩效运行监控汇总表", prefilled_from="project"),
    Round("selfeval", SELFEVAL, PROJECT, "national/selfeval", "项目支出绩效自评汇总表", prefilled_from="project",
          groups_file="selfeval-groups"),
    Round("department-adjust", ADJUST, DEPARTMENT, "national/department-adjust", "部门整体绩效目标调整汇总表",
          prefilled_from="department"),
    Round("department-monitor", MONITOR, DEPARTMENT, "national/department-monitor", "部门整体绩效运行监控汇总表",
          prefilled_from="department"),
    Round("department-selfeval", SELFEVAL, DEPARTMENT, "national/department-selfeval", "部门整体支出绩效自评汇总表",
          prefilled_from="department", groups_file="department-selfeval-groups"),
)}


def summary_title(rounds, year) -> str:
    """The summary's name for the rounds merged in it: its round's, or, for forms of several rounds, the
    first of them in ROUNDS' order (a merge of one round is the usual case)."""
    ordered = sorted(set(rounds), key=lambda r: list(ROUNDS).index(r.key))
    if not ordered:
        return f"{year}年预算绩效目标申报汇总表"
    return ordered[0].summary_title(year)
