"""Follow-up forms from the ledger of a declaration round: one workbook per unit, one sheet per declared
project (the unit's newest merged version), with what was declared prefilled and locked.

`perfxl generate national/selfeval --year Y --roster R --from LEDGER -o DIR`. A roster unit with no
declaration in the ledger gets no empty form: it is listed in the command's output and in manifest.json.
The 分值 come from `templates/hierarchies/selfeval-groups.yaml`: each declared 一级 (or 一级/二级) maps to a
group, whose points are spread evenly over its rows.

What each unit is issued is recorded (perfxl.issued: 下发记录.sqlite beside the forms, the round named in
every form's stamp): a returned form is checked and scored against that record, never against its own
copy. The hidden declared sheet only feeds the form's live checks (分值 per 一级).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .domain import MONEY_UNITS
from .errors import OutputError, PerfxlError
from .files import ensure_writable_dir, write_bytes_atomic
from .generator import (
    REGION_TOKEN,
    TOKENS,
    build_workbook,
    form_filename,
    guide_title_lines,
    guide_unit_lines,
    patchable_region,
)
from .issued import RECORD_FILE, IssuedProject, new_round, record_round
from .ledger import Ledger, check_ledger_file
from .manifest import Manifest, write_manifest
from .pipeline import merged_forms
from .prefilled import CannotPatch, PrefilledMaster
from .records import CheckedForm
from .roster import Unit
from .rounds import ADJUST
from .scoring import spread
from .spec import Spec, load_data, load_spec, substitutes_unit
from .versions import approved_versions

GROUPS_FILE = "selfeval-groups"


@dataclass
class Declared:
    """One declared project as the follow-up form is prefilled with it."""

    unit_code: str
    fields: dict[str, Any]
    rows: list[dict[str, Any]]  # level1, level2, level3, target, group, points
    name: str = ""  # the project's (or the department's) name as declared


@dataclass
class FollowupResult:
    manifest: list[dict] = field(default_factory=list)
    without_declaration: list[Unit] = field(default_factory=list)


def declarations(ledger_path: Path, templates_dir: Path | None = None, units: set[str] | None = None,
                 family: str = "project") -> dict[str, list[tuple[CheckedForm, Spec]]]:
    """{unit code: [(checked declaration, its spec), …]} for every file of the `family` round (perfxl.rounds:
    the round a follow-up is prefilled from) the ledger's last merge merged (of the `units` codes only, when
    given: each one is validated again, which is the cost here)."""
    out: dict[str, list[tuple[CheckedForm, Spec]]] = defaultdict(list)
    for code, checked, spec in declared_forms(ledger_path, templates_dir, units, family):
        out[code].append((checked, spec))
    return out


def declared_forms(ledger_path: Path, templates_dir: Path | None = None, units: set[str] | None = None,
                   family: str = "project"):
    """(unit code, checked declaration, its spec) of each file `declarations` gives, one at a time: a
    province's checked declarations do not fit in memory together. The ledger is opened and its merge found
    now, so a missing or unusable ledger is said at once; the forms are read as they are taken."""
    if not Path(ledger_path).is_file():
        raise OutputError(f"找不到报送台账 (no such ledger): {ledger_path}")
    check_ledger_file(Path(ledger_path))
    ledger = Ledger(Path(ledger_path), readonly=True)
    try:
        runs = ledger.finished_runs()
        if not runs:
            raise OutputError(f"报送台账中还没有完成的汇总 (the ledger has no finished merge): {ledger_path}")
        # The newest merge of the round the follow-up is prefilled from: a merge of other forms into the same
        # ledger since (adjustments merged with --db) leaves the declarations where they were
        seen, settings = ledger.run_outcomes(runs[0])
        for run in runs:
            seen, settings = ledger.run_outcomes(run)
            if any(s["outcome"] == "merged" and s.get("template") and _family(s, templates_dir) == family
                   for s in seen):
                break
    except BaseException:
        ledger.close()
        raise
    return _forms_of(ledger, seen, settings, templates_dir, units, family)


def _forms_of(ledger: Ledger, seen, settings, templates_dir: Path | None, units: set[str] | None, family: str):
    try:
        for s, checked in merged_forms(ledger, seen, settings, templates_dir, units):
            spec = load_spec(checked.template, checked.year, checked.region, templates_dir=templates_dir)
            if spec.family != family:
                continue
            yield checked.unit_code or s.get("unit_code") or "", checked, spec
    finally:
        ledger.close()


def _family(s: dict, templates_dir: Path | None) -> str | None:
    try:
        return load_spec(s["template"], s.get("year") or None, templates_dir=templates_dir).family
    except PerfxlError:  # a template no longer there: not this round's
        return None


def group_map(templates_dir: Path | None, name: str = GROUPS_FILE) -> tuple[dict[str, float], dict[str, dict[str, str]]]:
    """(points per scoring group, {hierarchy: {一级 or 一级/二级: group}}) from templates/hierarchies/`name`.yaml."""
    data = load_data("hierarchies", name, templates_dir)
    return ({str(k): float(v) for k, v in data["points"].items()},
            {str(h): {str(k): str(v) for k, v in m.items()} for h, m in data["groups"].items()})


# What a project follow-up form is prefilled with when its template names nothing else (Spec.prefill).
DEFAULT_PREFILL = {"project_name": "name", "department": "department", "implementing_unit": "unit_name",
                   "goal_expected": "goal", "funds_total_initial": "budget", "funds_adjustment": "adjustment",
                   "funds_adjusted": "adjusted_budget", "target_version": "target_version"}
ADDED_ROWS = 10  # the blank rows of an adjustment form's indicator table, for rows a unit adds
ORIGINAL = "申报（未调整）"  # the version a project's targets are in until an adjustment is approved


def declared_projects(checked: CheckedForm, spec: Spec, unit: Unit, points: dict[str, float],
                      groups: dict[str, dict[str, str]], prefill: dict[str, str] | None = None,
                      approved: dict | None = None) -> list[Declared]:
    """Each project (or whole department) of a declaration as the follow-up form's prefill: the fields
    `prefill` names (field → declared fact: name, department, unit_name, goal, budget in 万元), and the
    indicator rows with their group and 分值, each row's target its full-year value (IndicatorSpec.main).
    A declaration whose template has no indicator table gives none: a follow-up form scores declared
    indicators, and it declared none (its unit is listed as without a declaration). A project with an
    approved adjustment (`approved`: perfxl.versions) is prefilled with its newest approved targets, budget
    and goal, and says which version they are (年初预算数 stays what was declared: 年初批复数)."""
    table = spec.indicator_table()
    if table is None:
        return []
    ind = table.indicator
    hierarchy = ind.hierarchy
    mapping = groups.get(hierarchy.name, {})
    factor = MONEY_UNITS[spec.money_unit] / MONEY_UNITS["万元"]
    out = []
    for p in checked.projects:
        version = (approved or {}).get((unit.code, p.name))
        targets = version.content["rows"] if version is not None else [
            {"level1": r.level1, "level2": r.level2, "level3": r.level3, "target": r.texts[ind.main]}
            for r in p.indicators]
        rows = []
        for r in targets:
            level1, level2 = hierarchy.canonical(r["level1"]), hierarchy.canonical(r["level2"])
            group = mapping.get(f"{level1}/{level2}") or mapping.get(level1, "过程")
            # 一级, 二级 and the group repeat in every unit's rows: one string each, not one a row
            rows.append({"level1": _shared(r["level1"]), "level2": _shared(r["level2"]), "level3": r["level3"],
                         "target": r["target"], "group": group})
        by_group: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            by_group[row["group"]].append(row)
        for group, members in by_group.items():
            for row, share in zip(members, spread(points.get(group, 0.0), len(members))):
                row["points"] = share
        budget = p.values.get(spec.budget_field) if spec.budget_field else None
        goal = next((p.values.get(f) for f in ("annual_goal", "goal", "annual_target") if p.values.get(f)), "")
        initial = round(budget * factor, 6) if isinstance(budget, int | float) else None
        # A version that left the budget or the goal as it was keeps them as they were before it (an earlier
        # approved adjustment's), not as declared
        adjusted = _kept(version, "budget_after", "budget_before") if version is not None else None
        if not isinstance(adjusted, int | float) or isinstance(adjusted, bool):
            adjusted = None
        facts = {"name": p.name, "department": unit.department or p.values.get("department") or "",
                 "unit_name": unit.name, "goal": (_kept(version, "goal_after", "goal_before") if version else "") or goal,
                 "budget": initial, "adjusted_budget": adjusted if adjusted is not None else initial,
                 "adjustment": round(adjusted - initial, 6) if adjusted is not None and initial is not None else 0.0,
                 "target_version": version.label if version is not None else ORIGINAL}
        out.append(Declared(unit.code, {field_id: facts[fact] for field_id, fact in (prefill or DEFAULT_PREFILL).items()},
                            rows, p.name))
    return out


def _shared(text):
    return sys.intern(text) if type(text) is str else text


def _kept(version, after: str, before: str):
    """A version's value after it, else (it did not change it) the value it started from."""
    value = version.content.get(after)
    return value if value not in (None, "") else version.content.get(before)


PREFILLED_COLUMNS = {"level1", "level2", "level3", "target", "points"}


def issued_projects(spec: Spec, projects: list[Declared]) -> list[IssuedProject]:
    """What a unit's follow-up form is prefilled with, as the round records it: per project sheet, every
    locked field's value (the declaration's, else the template's default, such as 预算执行率分值) and every
    indicator row with its target and 分值."""
    locked = {f.id: f.default for f in spec.fields.values() if f.locked and f.default not in (None, "")}
    return [IssuedProject(spec.sheet_title(i), {**locked, **{k: v for k, v in d.fields.items() if k in spec.fields}},
                          tuple({**row, "row": n} for n, row in enumerate(d.rows, start=1)))
            for i, d in enumerate(projects, start=1)]


def _issuing_region(declarations: list[tuple[CheckedForm, Spec]], templates_dir: Path | None) -> str | None:
    """The region a local declaration template is of (its default region: 绵阳市 for mianyang/project), or
    None for a national one."""
    for checked, _ in declarations:
        region = load_spec(checked.template, checked.year, templates_dir=templates_dir).region
        if region not in ("", "全国"):
            return region
    return None


def _build(task: tuple) -> bytes:
    """One unit's follow-up workbook (run in a worker process for large rosters): patched from the master
    of the units alike (`shared`), else built. `region_shared`: the master is the one of every region its
    template shows only as it is (`region_shares_master`), and this its key (`_shared_region_key`); else None."""
    template, year, region, unit_params, projects, templates_dir, password, spare, shared, region_shared = task
    rows = _table_rows(projects, spare)
    if shared and patchable_region(region):
        master = _master(template, year, region, unit_params, len(projects), rows, tuple(projects[0].fields),
                         templates_dir, password, region_shared)
        if master is not None:
            unit = {**unit_params, "region": region} if region_shared is not None else unit_params
            data = master.copy_for(unit, *_prefill(master.table, master.columns, projects))
            if data is not None:
                return data
    spec = load_spec(template, year, region, unit=unit_params, blank_rows=rows, templates_dir=templates_dir)
    table = next(iter(spec.tables.values()))
    values, declared = _prefill(table.id, [c.id for c in table.columns], projects)
    return build_workbook(spec, unit_params, password=password, values=values, declared=declared)


BATCH = 16  # forms a worker builds per task it is sent
# ... run on to the end of its last master's units, up to this many: a master of at most 3 × BATCH units is
# built by one worker only (a round of 20 counties' units shares about 40 masters of about 50 units each)
BATCH_MAX = 4 * BATCH


def _build_batch(tasks: list[tuple]) -> list[bytes]:
    return [_build(task) for task in tasks]


def _batches(tasks: list[tuple], keys: list) -> Iterator[list[tuple]]:
    """The tasks (sorted by master) in batches of BATCH, each run on to the end of its last master's units
    where that end is at most BATCH_MAX from its start: a master whose units a cut split went to both
    workers, and each built it (a province's varied rows and regions made a tenth of its masters twice; one
    master for all regions, most of them)."""
    start = 0
    while start < len(tasks):
        end = min(start + BATCH, len(tasks))
        if end < len(tasks) and keys[end] == keys[end - 1]:
            last = end
            while last < len(tasks) and last - start < BATCH_MAX and keys[last] == keys[end - 1]:
                last += 1
            if last == len(tasks) or keys[last] != keys[end - 1]:  # the master's units end within reach
                end = last
        yield tasks[start:end]
        start = end


def _in_turn(pool, tasks: list[tuple], keys: list, ahead: int):
    """Each task's workbook, in order, with at most `ahead` batches sent and not yet written: a pool given
    them all at once held every unit's prefill and, once patching outran writing, every built form."""
    batches = _batches(tasks, keys)
    pending = deque(pool.submit(_build_batch, batch) for batch in itertools.islice(batches, ahead))
    while pending:
        done = pending.popleft().result()
        batch = next(batches, None)
        if batch is not None:
            pending.append(pool.submit(_build_batch, batch))
        yield from done


def _prefill(table: str, columns: list[str], projects: list[Declared]) -> tuple[list[dict], list[list[dict]]]:
    """A form's values (per project sheet: fields, and the first table's rows) and its declared rows."""
    values = [{"fields": d.fields,
               "tables": {table: [[row.get(c, "") if c in PREFILLED_COLUMNS else "" for c in columns]
                                  for row in d.rows]}} for d in projects]
    return values, [[{**row, "row": i + 1} for i, row in enumerate(d.rows)] for d in projects]


def _master_key(year: int, region: object, unit_params: dict, projects: list[Declared], spare: int) -> tuple:
    """What units share a master in: region (or `_shared_region_key`), sheets, rows, and how many lines
    填表说明 gives their name."""
    return (region, len(projects), _table_rows(projects, spare), tuple(projects[0].fields),
            guide_unit_lines(year, unit_params))


def _shared_region_key(title: str, shared: bool) -> tuple | None:
    """What stands for the region in a master's key where the region shares the master of its template's
    regions: how many lines its title takes on 填表说明, whose rows' heights are the master's. None where it
    does not (the region itself is then the key)."""
    return (REGION_TOKEN, guide_title_lines(title)) if shared else None


@lru_cache(maxsize=1024)
def region_shares_master(template: str, year: int, region: str | None, round_id: str,
                         templates_dir: Path | None) -> bool:
    """Whether this template shows the region only as it is, and only in its titles: its spec rendered for
    the region is its spec rendered for REGION_TOKEN with the region in the token's place, and the token
    is in nothing but the form's title, its title blocks and its region. Then one master, rendered for the
    token, serves every such region: a province's round of 100 counties no longer makes a master per
    county for each count of rows (a round whose units varied cost 11 ms a form, mostly masters).

    A template that works on the region (`region[:2]`, `{% if region == "上海市" %}`) fails the comparison.
    One that puts the region in a label, a prompt, a choice or a print header does too: the builder cuts and
    breaks those after the spec (a prompt's title at 32 characters, a dropdown's list at 255), which it
    would do to the token and not to the region. Both keep a master per region. Compared at the
    template's own rows: a template whose rows and region interact beyond that is not one this takes
    apart. A region that looks like a token is never shared (nor patched: `patchable_region`)."""
    if not region or not patchable_region(region):
        return False
    unit = {**TOKENS, "round": round_id}
    try:
        theirs = load_spec(template, year, region, unit=unit, templates_dir=templates_dir)
        mine = load_spec(template, year, REGION_TOKEN, unit=unit, templates_dir=templates_dir)
    except PerfxlError:
        return False
    if theirs.designed is not None or _token_outside_titles(mine):
        return False
    return _plain(mine, region) == _plain(theirs, None)


def _token_outside_titles(spec: Spec) -> bool:
    """Whether REGION_TOKEN is anywhere in the spec but its title, its title blocks' texts and its region."""
    rest = [getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name not in ("title", "region", "blocks")]
    blocks = [dataclasses.replace(b, text="") if b.kind == "title" else b for b in spec.blocks]
    return REGION_TOKEN in repr(_plain((rest, blocks), None))


def _plain(value: object, region: str | None) -> object:
    """A spec as nested tuples of its fields' values, REGION_TOKEN replaced by `region` in every text."""
    kind = type(value)
    if kind is str:
        return value.replace(REGION_TOKEN, region) if region is not None else value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (kind.__name__, *((f.name, _plain(getattr(value, f.name), region)) for f in dataclasses.fields(value)))
    if isinstance(value, dict):
        return ("dict", *((_plain(k, region), _plain(v, region)) for k, v in value.items()))
    if isinstance(value, list | tuple | frozenset | set):
        items = (_plain(v, region) for v in value)
        return (kind.__name__, *(sorted(items, key=repr) if isinstance(value, frozenset | set) else items))
    return value


def _table_rows(projects: list[Declared], spare: int) -> int:
    """The rows of a form's indicator table: its longest project's, and the blank rows for added ones."""
    return max(max(len(d.rows) for d in projects) + spare, 1)


_MASTERS: OrderedDict = OrderedDict()  # a worker's masters, newest last: forms come sorted by master
MASTERS_KEPT = 8


def _master(template: str, year: int, region: str | None, unit_params: dict, projects: int, rows: int,
            fields: tuple[str, ...], templates_dir: Path | None, password: str | None,
            region_shared: tuple | None = None) -> PrefilledMaster | None:
    """This process's master for the unit's forms, made on first use; None where one cannot be made (the
    forms are built). `region_shared`: the key (`_shared_region_key`) of the master every region that
    shares one shares (rendered for REGION_TOKEN), which a copy is given its region to fill in."""
    measure_as = unit_params if region_shared is None else {**unit_params, "region": region}
    key = (template, year, region if region_shared is None else region_shared,
           unit_params.get("round"), projects, rows, fields, templates_dir, password,
           guide_unit_lines(year, unit_params))
    if key in _MASTERS:
        _MASTERS.move_to_end(key)
        return _MASTERS[key]
    tokens = {**TOKENS, "round": unit_params.get("round", "")}
    spec = load_spec(template, year, region if region_shared is None else REGION_TOKEN, unit=tokens, blank_rows=rows,
                     templates_dir=templates_dir)
    table = next(iter(spec.tables.values()), None)
    master = None
    if table is not None and substitutes_unit(spec, TOKENS):  # else the template works on the unit's values
        try:
            master = PrefilledMaster(spec, tokens, projects, fields, table.id,
                                     PREFILLED_COLUMNS & {c.id for c in table.columns}, password, measure_as)
        except (CannotPatch, PerfxlError):  # built for each unit instead, which says what is wrong, if anything is
            master = None
    _MASTERS[key] = master
    while len(_MASTERS) > MASTERS_KEPT:
        _MASTERS.popitem(last=False)
    return master


def generate_followups(template: str, year: int, units: list[Unit], ledger_path: Path, outdir: Path,
                       region: str | None = None, templates_dir: Path | None = None,
                       avoid: set[Path] | None = None, progress=None, jobs: int = 0,
                       password: str | None = None, portal_url: str | None = None,
                       deadline: str | None = None) -> FollowupResult:
    """One follow-up workbook per roster unit that declared, and manifest.json (with the units that did not).
    Workbooks are built in a pool of `jobs` processes (0: one per core) when there are many. The portal's
    address and the deadline (ISO date) go on the handout (perfxl/manifest.py)."""
    outdir = Path(outdir)  # made only once the ledger has been read: a missing ledger leaves no empty folder
    protected = {os.path.realpath(p) for p in avoid or ()}
    if os.path.realpath(outdir / RECORD_FILE) in protected:
        raise OutputError(f"输出目录中的 {RECORD_FILE} 是输入文件，perfxl 不会改动它；请换一个输出目录")
    followup_spec = load_spec(template, year, region, templates_dir=templates_dir)
    followup = followup_spec.round
    prefill = {k: v for k, v in (followup_spec.prefill or DEFAULT_PREFILL).items() if k in followup_spec.fields}
    if not followup.followup:
        raise OutputError(f"{template} 不是后续表（监控、自评），不能从报送台账生成 (not a follow-up template)")
    points, groups = group_map(templates_dir, followup.groups_file or GROUPS_FILE)
    # An adjustment form's table has blank rows below the issued ones, where a unit adds an indicator (新增);
    # the other follow-up forms are exactly the rows issued
    spare = ADDED_ROWS if followup.stage == ADJUST else 0
    round_id = new_round()  # in every form's stamp: the merge finds what was issued by it
    by_code = {u.code: u for u in units}
    forms = declared_forms(ledger_path, templates_dir, set(by_code), followup.prefilled_from)  # says a bad ledger
    approved = approved_versions(ledger_path)  # the targets as the bureau last approved them
    # Each declaration made into its prefill as it is read, and let go: only the prefill is kept per unit
    prefilled: dict[str, list[Declared]] = defaultdict(list)
    issuing: dict[str, str] = {}  # the region a unit's first local declaration template is of
    for code, checked, spec in forms:
        unit = by_code.get(code)
        if unit is None:
            continue
        prefilled[code] += declared_projects(checked, spec, unit, points, groups, prefill, approved)
        if code not in issuing:
            local = _issuing_region([(checked, spec)], templates_dir)
            if local:
                issuing[code] = local
    result = FollowupResult()
    planned: list[tuple[Unit, str, list[Declared], tuple]] = []
    used_names: set[str] = set()
    specs: dict[str | None, Spec] = {}  # the follow-up template per region it is issued for
    for unit in units:
        projects = prefilled.get(unit.code, [])
        if not projects:
            result.without_declaration.append(unit)
            continue
        # Named after the region that issued the declaration where its template is a local one (绵阳市项目支出
        # 绩效运行监控表 for every unit of the 绵阳 form, not 市本级…), else the unit's own
        unit_region = region or issuing.get(unit.code) or unit.region or None
        if unit_region not in specs:
            specs[unit_region] = load_spec(template, year, unit_region, templates_dir=templates_dir)
        filename = form_filename(unit, specs[unit_region])
        if filename.lower() in used_names:
            filename = filename[:-5] + f"_{len(used_names)}.xlsx"  # two units whose safe names collide
        used_names.add(filename.lower())
        if os.path.realpath(outdir / filename) in protected:
            raise OutputError(f"输出文件 {outdir / filename} 是输入文件，perfxl 不会覆盖它")
        region_shared = _shared_region_key(specs[unit_region].title,
                                           region_shares_master(template, year, unit_region, round_id, templates_dir))
        planned.append((unit, filename, projects, (template, year, unit_region, {**unit.as_params(), "round": round_id},
                                                   projects, templates_dir, password, spare), region_shared))
    # Units alike share a master their forms are patched from (perfxl.prefilled); a unit alone is built.
    # Forms go to the workers sorted by master, so a worker makes each of its masters once.
    keys = [_master_key(year, task[2] if region_shared is None else region_shared, task[3], projects, spare)
            for _, _, projects, task, region_shared in planned]
    alike = Counter(keys)
    tasks = [(*task, alike[key] > 1, region_shared) for (*_, task, region_shared), key in zip(planned, keys)]
    order = sorted(range(len(planned)), key=lambda i: (str(keys[i]), i))
    del prefilled
    ensure_writable_dir(outdir)
    # Recorded before any form exists: a form handed out always has its record.
    record_round(outdir, round_id, template, year,
                 ((unit.code, issued_projects(specs[task[2]], projects)) for unit, _, projects, task, _ in planned))
    workers = jobs or os.cpu_count() or 1
    if workers > 1 and len(planned) >= 50:
        from .processes import worker_pool  # forked only where no other thread holds a lock a fork copies

        pool = worker_pool(workers)
        built = _in_turn(pool, [tasks[i] for i in order], [keys[i] for i in order], ahead=workers * 4)
    else:
        pool, built = None, map(_build, [tasks[i] for i in order])
    entries: dict[int, dict] = {}
    try:
        for i, data in zip(order, built):
            unit, filename, projects, *_ = planned[i]
            try:
                write_bytes_atomic(outdir / filename, data)
            except OSError as exc:
                raise OutputError(f"无法写入 (cannot write) {outdir / filename}: {exc.strerror or exc}") from None
            entries[i] = {"unit_code": unit.code, "unit_name": unit.name, "file": filename,
                          "projects": [d.name for d in projects]}
            if progress:
                progress(1)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    result.manifest = [entries[i] for i in range(len(planned))]  # in the roster's order
    # The same manifest as blank forms', with access codes and 分发清单.xlsx: the portal serves these forms too.
    departments = {u.code: u.department for u in units}
    for entry in result.manifest:
        entry.setdefault("department", departments.get(entry["unit_code"], ""))
    title = load_spec(template, year, region, templates_dir=templates_dir).title
    write_manifest(outdir, Manifest("followup", template, year, result.manifest, title, str(ledger_path),
                                    [{"unit_code": u.code, "unit_name": u.name} for u in result.without_declaration],
                                    portal_url, deadline),
                   protected)
    return result
