"""Roll-up input (节点汇总): the merged forms of a lower level's merge, from its ledger or export, each
form's stored data checked again here."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from perfxl.errors import OutputError
from perfxl.files import display_path
from perfxl.inbox import FileStat
from perfxl.ledger import Ledger, StoredDataError, unpack
from perfxl.pipeline import CheckOptions, check_read
from perfxl.problems import L
from perfxl.read import FormData
from perfxl.validator import rejected

from .worker import FileResult, finished


def input_labels(paths: list[Path]) -> list[tuple[Path, str]]:
    """How each lower level's file is named in the summary: its file name, or its whole path where two
    inputs share a name (two counties' `export.perfxl`), so their forms never stand for each other."""
    names = [p.name for p in paths]
    return [(p, p.name if names.count(p.name) == 1 else display_path(p)) for p in paths]


def rolled_up(path: Path, check: CheckOptions, roster: dict | None, label: str | None = None) -> Iterator[FileResult]:
    """The merged forms of a lower level's merge (节点汇总), from its ledger or export: each form's stored
    data checked again here, named `input#original path`.

    A lower level's file is evidence, not a record: a form is known by the digest of its stored data,
    recomputed here (never by the sha256 the file claims for it), and its data must name the file the
    outcome claims it came from. Whatever in it cannot be used (the file, its last run, an outcome, a
    form's data) costs that input or that form, as `file-corrupt` under `input#…`, never the run. A unit in
    two lower levels is then decided like two versions of one file: the same data is a duplicate, otherwise
    the newest wins; two copies claiming one original file with different data are a conflict
    (versions.decide)."""
    name = label or path.name

    def refused(shown: str, detail, claimed: str = "") -> FileResult:
        return finished(shown, rejected(shown, "file-corrupt", detail=detail), sha="", stat=FileStat(0, 0, 0, 0),
                        source="rollup", claimed=claimed)

    try:
        lower = Ledger(path, readonly=True)
    except OutputError as exc:
        yield refused(name, str(exc))
        return
    try:
        run = lower.last_run()
        if run is None:
            yield refused(name, L("其中没有完成的汇总", "it holds no finished merge"))
            return
        for number, text in enumerate(lower.outcome_rows(run), start=1):
            o = lower_outcome(text)
            if o is None:
                yield refused(f"{name}#{number}", L("汇总结果记录无法识别", "an outcome record that cannot be read"))
                continue
            if o["outcome"] != "merged":
                continue
            shown = f"{name}#{o['path']}"
            blob = lower.stored_blob(o["sha"])
            if blob is None:  # merged below but its data is not in the ledger: said, never dropped silently
                yield finished(shown, rejected(shown, "file-unreadable", detail=L(
                    "下级台账中缺少此表的数据", "the lower ledger lacks this form's data")),
                    sha="", stat=_lower_stat(o), source="rollup", claimed=o.get("claimed") or o["sha"])
                continue
            original = o.get("claimed") or o["sha"]  # a city's outcome names its forms by their data's digest
            try:
                stored = unpack(blob)
                if stored.get("sha256") != original:
                    raise StoredDataError(L("表单数据与其声称的原文件摘要不符",
                                            "the form's data does not match the original file it claims"))
                digest = content_digest(stored)
                form = FormData.from_dict(stored)
            except StoredDataError as exc:
                yield refused(shown, exc.args[0] if exc.args else "", claimed=original)
                continue
            except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
                yield refused(shown, L(f"表单数据结构无法识别（{type(exc).__name__}）",
                                       f"form data of an unknown shape ({type(exc).__name__})"), claimed=original)
                continue
            form.path = shown
            yield finished(shown, check_read(form, check, roster), sha=digest, stat=_lower_stat(o), source="rollup",
                           form_blob=blob, claimed=original)
    except sqlite3.Error as exc:
        yield refused(name, L(f"无法作为报送台账读取（{exc}）", f"cannot be read as a ledger ({exc})"))
    finally:
        lower.close()


_SHA256 = re.compile(r"[0-9a-f]{64}")
# What a form's identity is made of when it arrives from a lower level: what was read from the file, not
# where the lower level found it (its path) nor what its perfxl version noticed on the way.
_WHERE_AND_HOW = ("path", "sha256", "notices", "stamp_source")


def content_digest(stored: dict) -> str:
    """The digest of a lower level's form by its data, recomputed here: two counties that read one file
    agree on it, and a copy with other data never passes for it. StoredDataError for text no reader makes
    (half a UTF-16 pair, which no summary, ledger or JSON can write)."""
    content = {k: v for k, v in stored.items() if k not in _WHERE_AND_HOW}
    try:
        text = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
        json.dumps(stored.get("notices"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise StoredDataError(L("表单数据含有无效字符", "the form's data holds characters no text can")) from None
    except (TypeError, ValueError) as exc:  # NaN passes, but keys of other types and the like do not
        raise StoredDataError(L(f"表单数据结构无法识别（{exc}）", f"form data of an unknown shape ({exc})")) from None
    return hashlib.sha256(text).hexdigest()


def lower_outcome(text) -> dict | None:
    """One outcome of a lower level's last run, if it has the shape perfxl writes; None otherwise."""
    try:
        o = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(o, dict):
        return None
    if not (isinstance(o.get("path"), str) and isinstance(o.get("outcome"), str) and isinstance(o.get("sha"), str)
            and isinstance(o.get("claimed", ""), str) and type(o.get("size")) is int and type(o.get("mtime_ns")) is int):
        return None
    if o["outcome"] == "merged" and not (_SHA256.fullmatch(o["sha"]) and _SHA256.fullmatch(o.get("claimed") or o["sha"])):
        return None
    if not (0 <= o["size"] < 1 << 40 and 0 <= o["mtime_ns"] <= _LATEST_NS):  # a time a summary can show
        return None
    return o


_LATEST_NS = 4_102_444_800 * 10**9  # 2100-01-01


def _lower_stat(o: dict) -> FileStat:
    """A lower level's form as its outcome describes the file it came from: its size and time only."""
    return FileStat(o["size"], o["mtime_ns"], 0, 0)
