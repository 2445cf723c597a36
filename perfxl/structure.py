"""The structure of a workbook, without its values: what a golden test of a generated form compares.

Sheets (state, protection, frozen pane, merged ranges, data validations, conditional formats, print
setup), defined names with their scope and range, and the names of the custom document properties. The
same idea as XlsxWriter's comparison against reference files, at the level a form's contract lives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def describe_workbook(path: Path) -> dict[str, Any]:
    """A JSON-ready description of a workbook's structure (openpyxl reads it; values are left out)."""
    import openpyxl

    wb = openpyxl.load_workbook(Path(path))
    try:
        names = [{"name": n, "scope": "", "ref": d.attr_text} for n, d in wb.defined_names.items()]
        sheets = []
        for ws in wb.worksheets:
            names += [{"name": n, "scope": ws.title, "ref": d.attr_text} for n, d in ws.defined_names.items()]
            sheets.append(_sheet(ws))
        return {
            "sheets": sheets,
            "defined_names": sorted(names, key=lambda n: (n["scope"], n["name"])),
            "custom_properties": sorted(p.name for p in wb.custom_doc_props.props),
        }
    finally:
        wb.close()


def _sheet(ws) -> dict[str, Any]:
    validations = [{"ranges": str(v.sqref), "type": v.type, "operator": v.operator, "formula1": v.formula1,
                    "formula2": v.formula2, "allow_blank": bool(v.allow_blank), "prompt": v.prompt or "",
                    "error": v.error or ""} for v in ws.data_validations.dataValidation]
    conditional = [{"ranges": str(rng.sqref), "rules": [{"type": r.type, "formula": list(r.formula or [])}
                                                        for r in rules]}
                   for rng, rules in ws.conditional_formatting._cf_rules.items()]
    setup = ws.page_setup
    return {
        "name": ws.title,
        "state": ws.sheet_state,
        "protected": bool(ws.protection.sheet),
        "freeze": ws.freeze_panes,
        "merged": sorted(str(r) for r in ws.merged_cells.ranges),
        "validations": sorted(validations, key=lambda v: v["ranges"]),
        "conditional_formats": sorted(conditional, key=lambda c: c["ranges"]),
        "print": {"orientation": setup.orientation, "paper": setup.paperSize, "fit_to_width": setup.fitToWidth,
                  "fit_to_height": setup.fitToHeight, "fit_to_page": bool(ws.sheet_properties.pageSetUpPr.fitToPage)
                  if ws.sheet_properties.pageSetUpPr else False,
                  "titles": ws.print_title_rows or "", "area": ws.print_area or ""},
    }
