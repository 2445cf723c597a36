"""Versions of a project's targets, kept in the declaration's ledger (its `target_versions` table).

财预〔2015〕88号 第二十八条: targets, once set, are adjusted only with a budget adjustment, submitted and approved
with it. An adjustment form (national/adjust, merged into a ledger of its own) becomes a version only when the
bureau decides it (`perfxl approve`): approved, it is what later monitoring and self-evaluation forms are
prefilled with and scored against; rejected, it is kept with its comment and changes nothing. Every decision
is a new row, never an update: the ledger holds the whole history, with its batch, date, kind and who decided.

A version's content is the project's targets after the adjustment, in order (issued rows with their new
values, removed rows gone, added rows last), the budget before and after, the adjusted goal, and the list of
what changed with each reason. Its digest is checked when it is read: a row edited by hand is not used.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import OutputError
from .ledger import Ledger, check_ledger_file
from .pipeline import merged_forms
from .rounds import ADJUST
from .spec import load_spec
from .values import normalize_text

APPROVED, REJECTED = "approved", "rejected"
STATUS_ZH = {APPROVED: "已批准", REJECTED: "已退回"}


@dataclass(frozen=True)
class Version:
    """One decided adjustment of one project."""

    id: int
    unit_code: str
    project: str
    status: str
    kind: str
    batch: str
    decided_at: str
    decided_by: str
    comment: str
    source: str  # the adjustment form it came from (its file name and sha256)
    content: dict  # rows, budget_before, budget_after, goal_after, changes

    @property
    def label(self) -> str:
        """How a form and a summary name it: 调整（第 3 版，批次 2021-07，2021-07-20 批准）."""
        return f"调整（第 {self.id} 版，批次 {self.batch}，{self.decided_at[:10]} {STATUS_ZH[self.status][1:]}）"


def _content_text(content: dict) -> str:
    return json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _digest(unit_code: str, project: str, status: str, text: str) -> str:
    """Of what a decision is: whose project, which way, and the content. An accidental edit of any of them (a
    row moved to another unit, a rejection turned into an approval by hand) no longer matches. Not a seal: the
    declaration's ledger is the consolidator's own file, and whoever can edit it can write a matching row."""
    whole = json.dumps([unit_code, project, status, text], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(whole.encode("utf-8", "surrogatepass")).hexdigest()


def _version(row) -> Version | None:
    vid, unit_code, project, status, kind, batch, at, by, comment, source, text, digest = row
    if not (isinstance(text, str) and isinstance(unit_code, str) and isinstance(project, str)
            and status in STATUS_ZH and _digest(unit_code, project, status, text) == digest):
        return None
    try:
        content = json.loads(text)
    except ValueError:
        return None
    if not (isinstance(content, dict) and isinstance(content.get("rows"), list)
            and all(isinstance(r, dict) and {"level1", "level2", "level3", "target"} <= set(r)
                    and all(isinstance(r[k], str) for k in ("level1", "level2", "level3", "target"))
                    for r in content["rows"])):
        return None
    return Version(int(vid), str(unit_code), str(project), status, str(kind), str(batch), str(at), str(by),
                   str(comment), str(source), content)


_COLUMNS = "id, unit_code, project, status, kind, batch, decided_at, decided_by, comment, source, content, digest"


def all_versions(db: sqlite3.Connection) -> list[Version]:
    """Every decision in the ledger, oldest first (an older ledger without the table: none)."""
    try:
        rows = db.execute(f"SELECT {_COLUMNS} FROM target_versions ORDER BY id").fetchall()
    except sqlite3.Error:
        return []
    return [v for v in map(_version, rows) if v is not None]


def approved_versions(ledger_path: Path) -> dict[tuple[str, str], Version]:
    """(unit code, project name) → its newest approved version."""
    ledger = Ledger(Path(ledger_path), readonly=True)
    try:
        return standing(all_versions(ledger.db))
    finally:
        ledger.close()


def _form_of(v: Version) -> tuple[str, str, str]:
    """The adjustment a decision is about: its unit, its project and the form it came from (by the form's
    sha256, whatever the file was called)."""
    sha = v.source.rsplit("sha256 ", 1)[-1].rstrip(")") if "sha256 " in v.source else v.source
    return v.unit_code, v.project, sha


def standing(versions: list[Version]) -> dict[tuple[str, str], Version]:
    """(unit code, project name) → its newest approved version that still stands: an approved adjustment
    rejected afterwards (the bureau withdrew its approval: a new row, the approval is kept) no longer
    counts, and the version approved before it is the project's again."""
    approved: dict[tuple[str, str], list[Version]] = {}
    for v in versions:  # oldest first
        kept = approved.setdefault((v.unit_code, v.project), [])
        if v.status == APPROVED:
            kept.append(v)
        else:
            kept[:] = [a for a in kept if _form_of(a) != _form_of(v)]
    return {key: kept[-1] for key, kept in approved.items() if kept}


def _adjustments(ledger_path: Path, units: set[str], templates_dir: Path | None) -> dict[str, list]:
    """{unit code: [(checked adjustment form, its sha256, its file name)]} merged by the adjustment ledger's
    last merge."""
    if not Path(ledger_path).is_file():
        raise OutputError(f"找不到调整表的报送台账 (no such ledger): {ledger_path}")
    check_ledger_file(Path(ledger_path))
    ledger = Ledger(Path(ledger_path), readonly=True)
    try:
        run = ledger.last_run()
        if run is None:
            raise OutputError(f"调整表的报送台账中还没有完成的汇总 (the ledger has no finished merge): {ledger_path}")
        seen, settings = ledger.run_outcomes(run)
        found: dict[str, list] = {}
        for s, checked in merged_forms(ledger, [s for s in seen if s.get("unit_code") in units], settings,
                                       templates_dir):
            if load_spec(checked.template, checked.year, templates_dir=templates_dir).round.stage != ADJUST:
                continue
            found.setdefault(s["unit_code"], []).append((checked, s["sha"], Path(s["path"]).name))
        return found
    finally:
        ledger.close()


def _declared_years(ledger_path: Path) -> set[int]:
    """The years of the forms the declaration ledger's merges took in (empty: nothing to compare with)."""
    ledger = Ledger(ledger_path, readonly=True)
    try:
        return {s["year"] for run in ledger.finished_runs() for s in ledger.run_outcomes(run)[0]
                if s.get("outcome") == "merged" and isinstance(s.get("year"), int)}
    finally:
        ledger.close()


def content_of(project) -> dict:
    """A checked adjustment sheet as a version's content: the targets after it, in order, and what changed."""
    scores = project.scores or {}
    lines = scores.get("indicators") or []
    rows = [{"level1": line["level1"], "level2": line["level2"], "level3": line["level3"],
             "target": line["after"] or line["before"]}
            for line in lines if line["change"] != "删除"]
    return {"rows": rows, "budget_before": scores.get("budget_before"), "budget_after": scores.get("budget_after"),
            "goal_after": str(project.values.get("goal_after") or ""),
            "goal_before": str(project.values.get("goal_before") or ""),
            "changes": [{k: line[k] for k in ("level1", "level2", "level3", "before", "after", "change", "reason")}
                        for line in lines if line["change"]]}


def decide(ledger_path: Path, adjustments: Path, units: list[str], *, approve: bool, comment: str = "",
           by: str = "", batch: str | None = None, templates_dir: Path | None = None) -> list[Version]:
    """Record the bureau's decision on the named units' adjustment forms (every project each asks to adjust)
    in the declaration's ledger. An adjustment with errors cannot be approved (it goes back to the unit);
    a unit with no adjustment form in `adjustments` is said, and nothing is written for any unit."""
    check_ledger_file(Path(ledger_path))
    found = _adjustments(Path(adjustments), set(units), templates_dir)
    missing = [u for u in units if u not in found]
    if missing:
        raise OutputError(f"调整表的报送台账中没有这些单位已汇总的调整表：{'、'.join(missing)} (no adjustment form)")
    years = _declared_years(Path(ledger_path))
    other = sorted({f"{name}（{checked.year} 年度）" for u in units for checked, _, name in found[u]
                    if years and checked.year not in years})
    if other:  # a version is of its year's targets: another year's adjustment would change the wrong ones
        raise OutputError(f"调整表与申报台账不是同一年度（台账为 {'、'.join(map(str, sorted(years)))} 年度）："
                          f"{'；'.join(other)} (another year's adjustment)")
    if approve:
        faulty = [f"{u}（{name}：{checked.errors} 个错误）" for u in units for checked, _, name in found[u]
                  if checked.errors]
        if faulty:
            raise OutputError(f"有错误的调整表不能批准，请退回单位修改（--reject --comment …）：{'；'.join(faulty)}")
    now = datetime.now().isoformat(timespec="seconds")
    batch = batch or now[:7]
    status = APPROVED if approve else REJECTED
    history = _history(Path(ledger_path))
    decided = {_form_of(v): v for v in history}  # the newest decision on each adjustment
    current = standing(history) if approve else {}
    rows, again, stale = [], [], []
    for unit in units:
        for checked, sha, name in found[unit]:
            for p in checked.projects:
                content = content_of(p)
                if not content["changes"] and content["budget_after"] is None and not content["goal_after"]:
                    continue  # a sheet that asks nothing: no version
                source = f"{name} (sha256 {sha[:12]})"
                last = decided.get((unit, p.name, sha[:12]))
                if last is not None and last.status == status:  # the same decision twice is one decision
                    again.append(f"{unit} {p.name}（第 {last.id} 版{STATUS_ZH[status]}）")
                    continue
                version = current.get((unit, p.name))
                if version is not None and not _starts_from(p, content, version):
                    stale.append(f"{unit} {p.name}（现行为第 {version.id} 版）")
                    continue
                text = _content_text(content)
                rows.append((unit, p.name, status, str((p.scores or {}).get("kind") or ""), batch, now, by, comment,
                             source, text, _digest(unit, p.name, status, text)))
    if stale:  # approved, it would undo the newer version it never saw
        raise OutputError(f"这些调整表是按批准前的指标生成的，调整前与现行版本不符，不能批准；请从报送台账重新生成调整表"
                          f"交单位重新填报，或退回：{'；'.join(stale)} (generated before the current version)")
    if again:
        raise OutputError(f"这些调整已经{STATUS_ZH[status][1:]}过，不重复记录：{'；'.join(again)}"
                          f" (already {'approved' if approve else 'rejected'}; nothing written)")
    ledger = Ledger(Path(ledger_path))
    try:
        with ledger.db:
            ids = [ledger.db.execute("INSERT INTO target_versions (unit_code, project, status, kind, batch, decided_at, "
                                     "decided_by, comment, source, content, digest) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                                     row).lastrowid for row in rows]
        return [v for v in all_versions(ledger.db) if v.id in set(ids)]
    except sqlite3.Error as exc:
        raise OutputError(f"无法写入报送台账 {ledger_path}: {exc}") from None
    finally:
        ledger.close()


def _starts_from(project, content: dict, version: Version) -> bool:
    """Whether an adjustment sheet's 调整前 (as it was issued) is `version`: its rows, budget and goal."""
    def text(a) -> str:
        return normalize_text(str(a or "")).replace(" ", "")

    def same(a, b) -> bool:
        return text(a) == text(b)

    before = sorted(tuple(text(line[k]) for k in ("level1", "level2", "level3", "before"))
                    for line in (project.scores or {}).get("indicators") or [] if line["change"] != "新增")
    if before != sorted(tuple(text(r[k]) for k in ("level1", "level2", "level3", "target"))
                        for r in version.content["rows"]):
        return False
    budget = version.content.get("budget_after")
    budget = budget if budget is not None else version.content.get("budget_before")
    if isinstance(budget, int | float) and isinstance(content.get("budget_before"), int | float) \
            and abs(budget - content["budget_before"]) > 0.005:
        return False
    goal = version.content.get("goal_after") or version.content.get("goal_before")
    return not (goal and content.get("goal_before") and not same(goal, content["goal_before"]))


def _history(ledger_path: Path) -> list[Version]:
    """Every decision already in the declaration's ledger, oldest first."""
    ledger = Ledger(ledger_path, readonly=True)
    try:
        return all_versions(ledger.db)
    finally:
        ledger.close()


def as_rows(versions: list[Version]) -> list[dict[str, Any]]:
    """Every version as a row (perfxl.open_ledger().versions(), 变更记录)."""
    return [{"版本": v.id, "单位编码": v.unit_code, "项目名称": v.project, "决定": STATUS_ZH[v.status],
             "调整类型": v.kind, "批次": v.batch, "决定时间": v.decided_at, "决定人": v.decided_by,
             "意见": v.comment, "来源": v.source, "调整前预算数": v.content.get("budget_before"),
             "调整后预算数": v.content.get("budget_after"), "调整的指标数": len(v.content.get("changes") or []),
             "调整后指标": len(v.content["rows"])} for v in versions]
