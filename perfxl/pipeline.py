"""One file through the stages: read → validate. Shared by `perfxl validate` and the merge workers.

Never raises for a bad file: whatever goes wrong becomes a rejected form with one coded problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .cachekeys import read_key
from .errors import ReadError
from .issued import book as issued_book
from .problems import L
from .read import FormData, found_at, read_workbook
from .validator import CheckedForm, check_form, rejected, rejected_by

# Parameters of the problems for what goes wrong inside perfxl rather than in the file's content.
MEMORY_LIMIT = L("内存限制", "the memory limit")
NESTING_LIMIT = L("嵌套深度限制", "the nesting limit")
READING = L("读取", "reading")
CHECKING = L("校验", "checking")


@dataclass(frozen=True)
class CheckOptions:
    template: str | None = None
    year: int | None = None
    templates_dir: str | None = None
    issued: tuple[str, ...] = ()  # record files of what follow-up forms were issued with (perfxl.issued)

    def read_key(self) -> str:
        """What form data read under these options is stored under in the ledger (cachekeys.read_key)."""
        return read_key(self.template, self.year, self.templates_dir)


def read_file(path: Path, options: CheckOptions) -> FormData:
    return read_workbook(Path(path), templates_dir=Path(options.templates_dir) if options.templates_dir else None,
                         template=options.template, year=options.year)


def check_read(form: FormData, options: CheckOptions, roster: dict | None = None) -> CheckedForm:
    try:
        return check_form(form, roster=roster, expect_year=options.year,
                          templates_dir=Path(options.templates_dir) if options.templates_dir else None,
                          issued=issued_book(options.issued))
    except Exception as exc:  # a bug must cost one file, not the run; the message names it
        return rejected(form.path, "internal-error", during=CHECKING, detail=f"{type(exc).__name__}: {exc}")


def check_file(path: Path, options: CheckOptions, roster: dict | None = None) -> CheckedForm:
    try:
        form = read_file(path, options)
    except ReadError as exc:
        return rejected_by(str(path), exc.problem)
    except MemoryError:
        return rejected(str(path), "file-too-complex", limit=MEMORY_LIMIT)
    except RecursionError:
        return rejected(str(path), "file-too-complex", limit=NESTING_LIMIT)
    except Exception as exc:
        return rejected(str(path), "internal-error", during=READING, detail=f"{type(exc).__name__}: {exc}")
    return check_read(form, options, roster)


def check_stored(stored: dict, options: CheckOptions, roster: dict | None = None, path: str | None = None) -> CheckedForm:
    """Validate form data kept in the ledger (FormData.to_dict) again, as the API and follow-up forms do; as
    read at `path` (read.found_at), when given."""
    form = FormData.from_dict(stored)
    return check_read(found_at(form, path) if path is not None else form, options, roster)


def merged_forms(ledger, seen: list[dict], settings: dict, templates_dir: Path | None = None,
                 units: set[str] | None = None):
    """(outcome, checked form) for every form a run merged (of the `units` codes only, when given), read from
    the ledger's stored data and validated again with the run's year: what follow-up forms are prefilled from
    and what an approval decides on. A form whose data is gone or cannot be read again is left out."""
    options = CheckOptions(year=settings.get("year"), templates_dir=str(templates_dir) if templates_dir else None)
    for s in seen:
        if s["outcome"] != "merged" or (units is not None and s.get("unit_code") and s["unit_code"] not in units):
            continue
        stored = ledger.stored_form(s["sha"])
        if stored is None:
            continue
        checked = check_stored(stored, options)
        if not checked.read_error and checked.template:
            yield s, checked
