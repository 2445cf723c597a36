"""`.xls` (BIFF) workbooks through xlrd, which also gives their defined names with sheet scope. Rows
are never padded: a far-corner cell must not cost a sheet's worth of memory."""

from __future__ import annotations

import io
import math
from typing import Any

from perfxl.errors import ReadError
from perfxl.reader.cells import MAX_CELLS, cell_name
from perfxl.reader.rawbook import RawBook


def _xls_failure(exc: Exception) -> ReadError:
    reason = str(exc).strip() or type(exc).__name__
    return ReadError("file-corrupt", detail=f".xls: {reason}")


def read_xls(data: bytes) -> RawBook:
    import xlrd

    try:
        # ragged_rows: rows are not padded to the declared width, so a file that declares 65,536 × 256 cells
        # and holds four costs four cells, not 16 million.
        book = xlrd.open_workbook(file_contents=data, on_demand=True, ragged_rows=True, logfile=io.StringIO())
    except Exception as exc:  # xlrd raises XLRDError, CompDocError, struct.error, AssertionError, ...
        raise _xls_failure(exc) from None
    try:
        return _xls_book(xlrd, book)
    except ReadError:
        raise
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:  # the same errors, raised while a sheet is loaded on demand
        raise _xls_failure(exc) from None
    finally:
        book.release_resources()


def _xls_book(xlrd, book) -> RawBook:
    sheet_names = book.sheet_names()
    names = []
    for nobj in book.name_obj_list:
        scope = nobj.scope if nobj.scope >= 0 else None
        try:
            target, rlo, rhi, clo, chi = nobj.area2d(clipped=False)
        except Exception:  # names that are not a plain area (constants, formulas, #REF!)
            continue
        ref = f"'{target.name.replace(chr(39), chr(39) * 2)}'!{cell_name(rlo, clo)}"
        if (rhi - rlo, chi - clo) != (1, 1):
            ref += f":{cell_name(rhi - 1, chi - 1)}"
        names.append((nobj.name, scope, ref))
    cells: dict[str, dict] = {}
    hidden = set()
    count = 0
    empty = (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK)
    for index, name in enumerate(sheet_names):
        sh = book.sheet_by_index(index)
        if getattr(sh, "visibility", 0):
            hidden.add(name)
        sheet_cells = {}
        for r in range(sh.nrows):
            for c in range(sh.row_len(r)):
                ctype = sh.cell_type(r, c)
                if ctype in empty:
                    continue
                value: Any = sh.cell_value(r, c)
                if ctype == xlrd.XL_CELL_ERROR:
                    value = xlrd.error_text_from_code.get(value, "#ERR")
                elif ctype == xlrd.XL_CELL_BOOLEAN:
                    value = bool(value)
                elif isinstance(value, float) and not math.isfinite(value):  # as reader.cells.number_or_text
                    value = repr(value)
                sheet_cells[(r, c)] = (value, None)
                count += 1
                if count > MAX_CELLS:
                    raise ReadError("too-many-cells", limit=MAX_CELLS)
        cells[name] = sheet_cells
        book.unload_sheet(index)
    return RawBook(sheet_names=sheet_names, hidden=hidden, names=names, date1904=bool(book.datemode), cells=cells)
