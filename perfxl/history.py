"""History as an input (`--history LEDGER`): what earlier years' ledgers hold of every unit's projects, as
perfxl.comparison's `History`.

A history ledger is the ledger (or the export, `perfxl export`) of an earlier year's declaration,
adjustment or self-evaluation merge. It is evidence read, never an input of this merge: its forms are not
merged, and it is never written to. From the newest finished merge of each round it holds, every merged
form's stored data is checked again by the one engine, with the settings that merge ran with:
- a declaration (申报) gives each project's targets, budget, 功能科目, code, and the grade 目标审核 gave it;
- approved adjustments (perfxl.versions, in the declaration's ledger) replace the targets they changed;
- a self-evaluation (自评) gives each target as issued, what was achieved, the execution and the score.
The same project in several ledgers of one year is put together (by unit and matched name).

Checking 10,000 stored forms again takes ~8 s of CPU, so it runs in a pool, and what it yields is kept in
the user's perfxl folder (`history/`, sealed with the user's key like every cache) under the ledger's
content digest: the next merge or generate with the same ledger reads that instead.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .cachekeys import READER_VERSION
from .comparison import History, Pack, PastProject, PastRow, name_key
from .domain import MONEY_UNITS
from .errors import OutputError, PerfxlError
from .files import home, write_bytes_atomic
from .ledger import Ledger, StoredDataError, cache_key, check_ledger_file, claims_ledger
from .pipeline import CheckOptions, check_stored
from .rounds import ADJUST, DECLARE, SELFEVAL
from .spec import Spec, load_spec
from .summary.review import assess
from .versions import approved_versions

HISTORY_VERSION = f"h3-{READER_VERSION}"
POOL_MIN_FORMS = 400  # fewer are checked in this process: a pool costs more
CHUNK = 200


def load_history(paths: list[Path], templates_dir: Path | None = None, jobs: int = 0,
                 issued: tuple = ()) -> History:
    """Every past project the ledgers `paths` hold. OutputError (exit 2, in Chinese) for a path that is not
    there or not a ledger or export. `issued`: records of what self-evaluation forms were issued with
    (--issued), for ledgers that do not carry them (made before perfxl kept them in the ledger)."""
    packs: list[Pack] = []
    notes: list[str] = []
    issued = tuple(str(Path(p).resolve()) for p in issued)
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise OutputError(f"找不到历史台账 (no such history ledger): {path}")
        if not claims_ledger(path):
            raise OutputError(f"{path} 不是报送台账 (.sqlite) 或导出文件 (.perfxl)，不能作为 --history "
                              "(a history input is a ledger or an export)")
        try:
            check_ledger_file(path)
        except OutputError as exc:  # its words are for a --db; a history ledger is only read
            raise _unusable(path, str(exc).split("；")[0].replace(str(path), "").strip()) from None
    # Each ledger's content digest, all at once: hashing a province's ledgers is read and hash work that
    # leaves Python's lock to other threads.
    with ThreadPoolExecutor(max_workers=max(1, min(len(paths), os.cpu_count() or 1))) as threads:
        digests = list(threads.map(lambda path: _digest(Path(path), templates_dir, issued), paths))
    for path, digest in zip(paths, digests):
        pack, said = _cached_or_read(Path(path), templates_dir, jobs, issued, digest)
        packs.append(pack)
        notes += said
    history = History(sources=[str(p) for p in paths], notes=notes, packs=packs)
    history.identity = hashlib.sha256("|".join(digests).encode()).hexdigest()
    return history


# ----------------------------------------------------------------------------------------------------
# Kept in the user's folder, by the ledger's content
# ----------------------------------------------------------------------------------------------------

def _digest(path: Path, templates_dir: Path | None, issued: tuple = ()) -> str:
    """The ledger's content: the database file and its write-ahead log, where SQLite has not yet moved
    what was last written (a ledger just merged keeps its last run there); and what it was read with."""
    h = hashlib.sha256(f"{HISTORY_VERSION}|{templates_dir or ''}|{issued}|".encode("utf-8", "surrogateescape"))
    for part in (path, path.with_name(path.name + "-wal")):
        try:
            fh = open(part, "rb")
        except FileNotFoundError:
            continue
        with fh:
            h.update(f"|{part.name[len(path.name):]}|".encode())
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def _cache_path(digest: str) -> Path:
    return home() / "history" / f"{digest}.json"


def _cached_or_read(path: Path, templates_dir: Path | None, jobs: int, issued: tuple,
                    digest: str) -> tuple[Pack, list[str]]:
    """(the ledger's past projects as a pack, what to tell the user of them): what an earlier run kept of
    the same content (its `digest`), else read from the ledger and kept."""
    key = cache_key()
    kept = _read_kept(_cache_path(digest), key, digest)
    if kept is not None:
        return kept
    projects, notes = read_ledger(path, templates_dir, jobs, issued)
    pack = Pack.of(projects)
    head = json.dumps({"notes": notes, "index": pack.index}, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass")
    body = head + b"\n" + pack.body
    seal = hmac.new(key, digest.encode() + b"|" + body, hashlib.sha256).hexdigest().encode()
    try:
        _cache_path(digest).parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(_cache_path(digest), seal + b"\n" + body)
    except (OSError, PerfxlError):
        pass  # not kept: the next run reads the ledger again
    return pack, notes


def _read_kept(path: Path, key: bytes, digest: str) -> tuple[Pack, list[str]] | None:
    """What an earlier run kept for this ledger, if it is sealed with this user's key; None otherwise (a
    planted or altered file is read as nothing, and the ledger is read again)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    seal, _, body = data.partition(b"\n")
    expected = hmac.new(key, digest.encode() + b"|" + body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(seal, expected):
        return None
    head, _, projects = body.partition(b"\n")
    try:
        kept = json.loads(head.decode("utf-8", "surrogatepass"))
        notes = [str(n) for n in kept["notes"]]
        index = [list(entry) for entry in kept["index"]]
        if not all(len(e) == 6 and type(e[1]) is int and type(e[4]) is int and type(e[5]) is int for e in index):
            return None
        return Pack(index, projects), notes
    except (ValueError, TypeError, KeyError, RecursionError):
        return None


# ----------------------------------------------------------------------------------------------------
# Read from the ledger: its forms checked again
# ----------------------------------------------------------------------------------------------------

def _unusable(path, why: str) -> OutputError:
    return OutputError(f"历史台账 {path} 无法使用：{why}；请确认它是 perfxl 写出的报送台账或导出文件 "
                       f"(the history ledger cannot be used)")


def read_ledger(path: Path, templates_dir: Path | None = None, jobs: int = 0,
                issued: tuple[str, ...] = ()) -> tuple[list[PastProject], list[str]]:
    """The past projects of one ledger: the newest finished merge of each round it holds, each merged form
    checked again with that merge's settings; approved adjustments applied to the declared targets.

    A history ledger is evidence someone handed in: a record of it that is not what perfxl writes (an
    outcome or a run's settings of another shape, a form's data that cannot be read, a table that is not
    there) is OutputError naming the file (exit 2), never a traceback nor a project quietly left out."""
    ledger = Ledger(Path(path), readonly=True)
    try:
        tasks: list[tuple[str, dict, list[str]]] = []
        taken: set[str] = set()
        for run in ledger.finished_runs():
            seen, settings = _run_records(ledger, run, path)
            stages: dict[str, list[str]] = {}
            for s in seen:
                if s.get("outcome") != "merged" or not s.get("template"):
                    continue
                stage = _stage(s["template"], s.get("year"), templates_dir)
                if stage in (DECLARE, SELFEVAL) and stage not in taken:
                    stages.setdefault(stage, []).append(s["sha"])
            for stage, shas in stages.items():
                taken.add(stage)
                options = {"year": settings.get("year"), "issued": [*(settings.get("issued") or []), *issued],
                           "templates_dir": str(templates_dir) if templates_dir else None}
                tasks += [(stage, options, shas[i:i + CHUNK]) for i in range(0, len(shas), CHUNK)]
    except sqlite3.Error as exc:
        raise _unusable(path, f"无法作为报送台账读取（{exc}）") from None
    finally:
        ledger.close()
    forms = sum(len(t[2]) for t in tasks)
    workers = jobs or os.cpu_count() or 1
    if workers > 1 and forms >= POOL_MIN_FORMS:
        from .processes import worker_pool

        with worker_pool(workers) as pool:
            chunks = list(pool.map(_read_chunk, [(str(path), *t) for t in tasks]))
    else:
        chunks = [_read_chunk((str(path), *t)) for t in tasks]
    projects = [PastProject.from_data(p) for chunk in chunks for p in chunk["projects"]]
    _apply_adjustments(path, projects)
    unverified = sum(chunk["unverified"] for chunk in chunks)
    notes = [f"{Path(path).name}：{unverified} 份自评表找不到下发记录（在生成自评表的电脑上运行，或用 --issued 指定"
             "下发记录.sqlite），其实际完成值按表中所填读取，自评得分和等级缺失"] if unverified else []
    return projects, notes


def _run_records(ledger: Ledger, run: int, path: Path) -> tuple[list[dict], dict]:
    """A finished run's outcomes and settings, each of the shape perfxl writes; OutputError otherwise."""
    try:
        seen, settings = ledger.run_outcomes(run)
    except (ValueError, RecursionError):
        raise _unusable(path, f"第 {run} 次汇总的记录不是有效的 JSON") from None
    year = settings.get("year") if isinstance(settings, dict) else None
    issued = settings.get("issued") if isinstance(settings, dict) else None
    if not isinstance(settings, dict) or not (year is None or type(year) is int) or not (
            issued is None or isinstance(issued, list) and all(isinstance(i, str) for i in issued)):
        raise _unusable(path, f"第 {run} 次汇总的设置无法识别")
    for number, s in enumerate(seen, start=1):
        if not isinstance(s, dict) or not isinstance(s.get("outcome"), str | None) or (
                s.get("outcome") == "merged" and not (isinstance(s.get("sha"), str)
                                                      and isinstance(s.get("template"), str | None))):
            raise _unusable(path, f"第 {run} 次汇总的第 {number} 条结果记录无法识别")
    return seen, settings


def _stage(template: str, year, templates_dir: Path | None) -> str | None:
    try:
        return load_spec(template, year if isinstance(year, int) else None, templates_dir=templates_dir).round.stage
    except (PerfxlError, OSError, ValueError):  # a template no longer there, or a name no template has
        return None


def _read_chunk(task: tuple) -> dict:
    """The past projects of some of one ledger's forms, as data (run in a worker)."""
    path, stage, settings, shas = task
    options = CheckOptions(year=settings["year"], templates_dir=settings["templates_dir"],
                           issued=tuple(settings["issued"]))
    with_ledger = CheckOptions(year=settings["year"], templates_dir=settings["templates_dir"],
                               issued=(*settings["issued"], str(Path(path).resolve())))
    unverified = 0
    templates_dir = Path(settings["templates_dir"]) if settings["templates_dir"] else None
    ledger = Ledger(Path(path), readonly=True)
    out: list[list] = []
    try:
        for sha in shas:
            try:
                stored = ledger.stored_form(sha)
                if stored is None:
                    continue
                checked = check_stored(stored, options)
            except StoredDataError as exc:
                raise _unusable(path, f"表单 {sha[:12]} 的数据无法读取（{exc}）") from None
            except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
                raise _unusable(path, f"表单 {sha[:12]} 的数据结构无法识别（{type(exc).__name__}）") from None
            if stage == SELFEVAL and checked.issued == "" and not checked.read_error:
                # not found where that merge found it (another computer, a record file since moved): the copy
                # the merge kept in its own ledger (or its export) is what it was checked against
                checked = check_stored(stored, with_ledger)
            if checked.read_error or not checked.template or checked.year is None:
                continue
            try:
                spec = load_spec(checked.template, checked.year, checked.region, templates_dir=templates_dir)
            except PerfxlError:
                continue
            if stage == SELFEVAL and not checked.issued:
                unverified += 1
            out += [p.to_data() for p in past_projects(checked, spec, stage, templates_dir)]
    except sqlite3.Error as exc:
        raise _unusable(path, f"无法作为报送台账读取（{exc}）") from None
    finally:
        ledger.close()
    return {"projects": out, "unverified": unverified}


def past_projects(checked, spec: Spec, stage: str, templates_dir: Path | None = None) -> list[PastProject]:
    """What a checked declaration or self-evaluation says of its projects, as history keeps it."""
    table = spec.indicator_table()
    hierarchy = table.indicator.hierarchy if table is not None else None
    factor = MONEY_UNITS[spec.money_unit] / MONEY_UNITS["万元"]
    out = []
    for p in checked.projects:
        def canonical(label: str) -> str:
            return hierarchy.canonical(label) if hierarchy is not None else label

        budget = p.values.get(spec.budget_field) if spec.budget_field else None
        past = PastProject(checked.year, checked.unit_code or "", checked.unit_name or "",
                           str(p.values.get("department") or ""), p.name,
                           code=str(p.values.get("project_code") or ""),
                           subject_code=str(p.values.get("subject_code") or ""),
                           budget=round(budget * factor, 6) if _is_number(budget) else None,
                           sources=[stage], family=spec.family if stage == DECLARE else spec.round.prefilled_from or "")
        if stage == DECLARE:
            if table is not None:
                main = table.indicator.main
                past.rows = [PastRow(canonical(r.level1), canonical(r.level2), r.level3, r.texts.get(main, ""))
                             for r in p.indicators]
            past.review_grade = assess(spec, checked, p, templates_dir).grade
        else:
            scores = p.scores or {}
            execution = scores.get("execution") or {}
            spent = execution.get("spent")
            budget = execution.get("budget")
            past.budget = round(budget * factor, 6) if _is_number(budget) else past.budget
            past.spent = round(spent * factor, 6) if _is_number(spent) else None
            past.score = scores.get("total") if _is_number(scores.get("total")) else None
            past.grade = str(scores.get("grade") or "")
            past.rows = [PastRow(canonical(str(line.get("level1") or "")), canonical(str(line.get("level2") or "")),
                                 str(line.get("level3") or ""), str(line.get("target") or ""),
                                 str(line.get("actual") or ""))
                         # the rows issued (scored); where no record of what was issued could be found, the form's own
                         for line in scores.get("indicators") or [] if line.get("points") is not None or not checked.issued]
        out.append(past)
    return out


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _apply_adjustments(path: Path, projects: list[PastProject]) -> None:
    """A declared project whose adjustment the bureau approved had those targets for the rest of its year."""
    try:
        approved = approved_versions(path)
    except (OutputError, OSError, ValueError):
        return
    if not approved:
        return
    for p in projects:
        version = approved.get((p.unit_code, p.name))
        if version is None or DECLARE not in p.sources:
            continue
        rows = version.content.get("rows") or []
        by_name = {(name_key(r.level2), name_key(r.level3)): r for r in p.rows}
        adjusted = []
        for row in rows:
            old = by_name.get((name_key(row.get("level2")), name_key(row.get("level3"))))
            adjusted.append(PastRow(old.level1 if old else str(row.get("level1") or ""),
                                    old.level2 if old else str(row.get("level2") or ""),
                                    str(row.get("level3") or ""), str(row.get("target") or "")))
        p.rows = adjusted
        if ADJUST not in p.sources:
            p.sources.append(ADJUST)
