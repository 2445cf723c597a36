"""One file through the stages: read → validate. Shared by `perfxl validate` and the merge workers.

Never raises for a bad file: whatever goes wrong becomes a rejected form with one coded problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ReadError
from .read import FormData, read_workbook
from .validate import CheckedForm, check_form, rejected


@dataclass(frozen=True)
class CheckOptions:
    template: str | None = None
    year: int | None = None
    lang: str = "zh"
    templates_dir: str | None = None


def read_file(path: Path, options: CheckOptions) -> FormData:
    return read_workbook(Path(path), templates_dir=Path(options.templates_dir) if options.templates_dir else None,
                         template=options.template, year=options.year)


def check_read(form: FormData, options: CheckOptions, roster: dict | None = None) -> CheckedForm:
    try:
        return check_form(form, roster=roster, expect_year=options.year, lang=options.lang,
                          templates_dir=Path(options.templates_dir) if options.templates_dir else None)
    except Exception as exc:  # a bug must cost one file, not the run; the message names it
        return rejected(form.path, "internal-error", f"校验时出现内部错误 ({type(exc).__name__}: {exc})")


def check_file(path: Path, options: CheckOptions, roster: dict | None = None) -> CheckedForm:
    try:
        form = read_file(path, options)
    except ReadError as exc:
        return rejected(str(path), exc.code, str(exc))
    except MemoryError:
        return rejected(str(path), "file-too-complex", "文件过于复杂，读取时超出内存限制")
    except RecursionError:
        return rejected(str(path), "file-too-complex", "文件结构嵌套过深，无法读取")
    except Exception as exc:
        return rejected(str(path), "internal-error", f"读取时出现内部错误 ({type(exc).__name__}: {exc})")
    return check_read(form, options, roster)
