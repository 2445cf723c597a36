"""What a round hands out: the forms of any round of the year, blank (申报) or prefilled from the ledger of the
round before (监控, 自评, for projects and 部门整体), each with its access code in one manifest.json shape and
the printable 分发清单.xlsx. `perfxl generate` and `perfxl.generate()` both come here, and the template's
round (perfxl.rounds) decides which kind of form it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import OutputError
from .followup import generate_followups
from .generator import generate_forms
from .history import load_history
from .library import load_library
from .references import last_year_sheet, library_extras
from .roster import Unit
from .spec import Spec, load_spec


@dataclass
class Handout:
    spec: Spec
    forms: list[dict]  # the manifest's entries: unit, file, access code (and a follow-up's projects)
    without_declaration: list[Unit] = field(default_factory=list)  # a follow-up round's units that got no form
    notes: list[str] = field(default_factory=list)  # what the user should know of how history was read


def generate_round(template: str, year: int, units: list[Unit], outdir: Path, *, ledger: Path | None = None,
                   region: str | None = None, projects: int | None = None, password: str | None = None,
                   templates_dir: Path | None = None, progress=None, blank_rows: int | None = None,
                   avoid: set[Path] | None = None, portal_url: str | None = None,
                   deadline: str | None = None, history: list[Path] = (), library: Path | None = None,
                   issued: tuple = ()) -> Handout:
    """The round's forms into `outdir`. A follow-up round needs `ledger`, the declaration round's ledger; a
    declaration round takes none. Nothing is written when either is asked for the wrong round. A declaration
    round's blank forms carry, with `history` (earlier years' ledgers), a 上年参考 sheet for each unit that
    ran projects the year before, and with `library` (perfxl.library) its choices, typical values, 固化指标
    and 指标参考 sheet."""
    spec = load_spec(template, year, region, blank_rows=blank_rows, templates_dir=templates_dir)  # fail fast
    avoid = set(avoid or ())
    if (history or library) and (spec.round.followup or spec.designed is not None):
        raise OutputError(f"--history 和 --library 用于生成空白申报表；{template} 是"
                          + ("后续表" if spec.round.followup else "导入的表样（暂不支持）")
                          + " (history and a library go on blank declaration forms of YAML templates)")
    if spec.round.followup:
        if ledger is None:
            raise OutputError(f"{template} 是后续表（{spec.title}），请用 --from 指定申报汇总的报送台账 (.sqlite) "
                              "(a follow-up form is made from the declaration's ledger)")
        result = generate_followups(template, year, units, Path(ledger), Path(outdir), region=region,
                                    templates_dir=templates_dir, avoid=avoid | {Path(ledger)}, progress=progress,
                                    password=password, portal_url=portal_url, deadline=deadline)
        return Handout(spec, result.manifest, result.without_declaration)
    if ledger is not None:
        raise OutputError(f"{template} 是申报表（{spec.title}），生成空白表，不从报送台账生成：请去掉 --from "
                          "(a declaration form is generated blank)")
    extras = library_extras(load_library(Path(library)), spec) if library else None
    past = load_history([Path(p) for p in history], templates_dir, issued=issued) if history else None

    def unit_sheets(unit: Unit):
        sheet = last_year_sheet(past, unit, year) if past is not None else None
        return (sheet,) if sheet is not None else ()

    forms = generate_forms(template, year, units, Path(outdir), region=region, projects=projects, password=password,
                           templates_dir=templates_dir, progress=progress, blank_rows=blank_rows,
                           avoid=avoid | {Path(p) for p in history} | ({Path(library)} if library else set()),
                           portal_url=portal_url, deadline=deadline, extras=extras,
                           unit_sheets=unit_sheets if past is not None else None)
    return Handout(spec, forms, notes=list(past.notes) if past is not None else [])
