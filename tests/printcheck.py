"""The print check: what a person sees when a workbook perfxl wrote is printed.

`check_workbook(path)` renders the workbook with LibreOffice to PDF and returns what a reader of the printed
pages would trip over, as `Finding`s (workbook, sheet, cell or page, what, measured). `check_workbooks` does
the same for many files in one or two LibreOffice processes (a load costs about a second; starting one, two).

What is measured, how, and why
------------------------------
LibreOffice is the judge. One LibreOffice process per batch (a private profile each) loads every workbook
through UNO, writes its PDF, and reports the layout it printed by: per PDF page its sheet and cell range
(the renderer's `SourceRange`: the page breaks are LibreOffice's own), the sheet's column widths and row heights
(after its optimal-height pass), title rows, page style (paper, margins, header/footer, centring, scale or
fit-to-pages), and every printed cell's displayed text ("12,920,600.00", a formula's result), alignment, wrap
flag and font size. `pdftotext -bbox` then gives every word LibreOffice drew with its box, and each page's
size. The cell grid is placed on the page from the margins and the centring; the one thing LibreOffice does
not report, the zoom of a fit-to-pages sheet, is found as the whole percent (LibreOffice zooms in whole
percents) that puts the most cells' words where their alignment says they must be. A page where fewer than
half of those anchors agree is reported as `unplaced` rather than judged on a grid that may be wrong.

Each word is then given to the cell whose text it is part of and that could have drawn it where it is (a
non-wrapping text starts at its alignment's edge and stays on its row; a wrapped one stays in its
columns); pdftotext joins two cells' texts into one word where one ends as the next begins, and such a word
is split into the fewest pieces that are each part of a cell's text. A cell's words are what a reader sees:
- `too-wide` (a non-wrapping cell): its words are less than its text, or reach more than 0.5 pt into a
  neighbour that holds something (text, a number, a formula, or an input cell a unit is to fill) or past
  the printed area. LibreOffice clips such a text at the neighbour and draws only the glyphs that fit, or,
  deciding with screen metrics, draws it on over the neighbour; either way the reader loses it (measured:
  what is shown of the whole text, and how far it runs into which cells). Running on into empty cells
  inside the printed area is what spreadsheets do and is not a finding.
- `cut` (a wrapped cell): its words are less than its text (lines dropped, or cut at the page's edge).
- `taller`: a cell's lines reach above its top or below its bottom by more than 2 pt (or 0.15 of the font
  size): the text is drawn over the next row, as a wrapped text in too short a row is. The glyph box
  pdftotext gives includes the font's line gap, so a line's ink is taken as its box less 15% top and bottom.
- `hashes`: a number too wide for its column prints as ###.
- `scale`: a sheet printed below 60% (the zoom above): at 11 pt that is text under 6.6 pt.
- `paper`: a page that is neither A4 nor, where the sheet's page setup declares it (paperSize 8), A3.
- `page-number`: a page without 第 N 页 on it (the footer's page number).
- `not-printed`: rows the PDF leaves below a page's printable area, so that they are on no page.

The renderer's page ranges and the PDF export drift apart on long fit-to-width sheets (LibreOffice lays the
export out on another device); each later page's first row is taken as the one that puts the page's
unique texts at its title rows' vertical offset.

Why not an estimate from the workbook alone (CJK two units, Latin one)? Widths depend on the fonts; an
estimate is right for the usual case and wrong at the margin, where the findings are. The rendering is
what a printer makes of the file. Its fonts must be those of the machines the forms are opened on:
Calibri (perfxl's default font, on which Excel's column widths are based) has a metric twin, Carlito,
which LibreOffice uses in its place; without it LibreOffice measures columns with DejaVu Sans, about a
quarter wider, and passes CJK text Excel would cut. `check_workbooks` refuses to run without Carlito and
a CJK font (`fonts-crosextra-carlito`, `fonts-wqy-zenhei`; .ci/run installs them).

Run under the Python that has `uno` (Debian's /usr/bin/python3) as
`python3 printcheck.py --render OUTDIR LISTING.json` it is the LibreOffice side (see `_render_main`).
"""

from __future__ import annotations

import bisect
import html
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

HMM_PER_PT = 2540 / 72  # LibreOffice's API speaks 1/100 mm
MIN_SCALE = 0.60
A4 = (595.28, 841.89)
A3 = (841.89, 1190.55)
PAPER_TOLERANCE = 2.0  # pt
OVERLAP_TOLERANCE = 0.5  # pt on the page
ANCHOR_TOLERANCE = 0.8  # pt: where a cell's text must be, given its alignment
CELL_PADDING = 35 / HMM_PER_PT  # LibreOffice's left/right text distance in a cell (35/100 mm), at 100%
SHIFTS = 12  # rows a page's first row may be from where LibreOffice's renderer reports it
PAGE_NUMBER = re.compile(r"第\s*\d+\s*页")
STYLE_PROPERTIES = ("Width", "Height", "LeftMargin", "RightMargin", "TopMargin", "BottomMargin", "HeaderIsOn",
                    "HeaderHeight", "HeaderBodyDistance", "FooterIsOn", "FooterHeight", "FooterBodyDistance",
                    "CenterHorizontally", "CenterVertically", "PageScale", "ScaleToPages", "ScaleToPagesX",
                    "ScaleToPagesY")
CELL_PROPERTIES = ("IsTextWrapped", "HoriJustify", "VertJustify", "CharHeight", "FormulaResultType2", "ParaIndent",
                   "RotateAngle", "ShrinkToFit")


@dataclass(frozen=True)
class Finding:
    workbook: str  # file name
    sheet: str
    where: str  # a cell ("B7") or a page ("第 3 页")
    what: str  # cut, overlap, taller, hashes, scale, paper, page-number, unplaced
    measured: str  # what was measured, in words and figures

    def line(self) -> str:
        return f"{self.workbook} | {self.sheet} | {self.where} | {self.what} | {self.measured}"


class RenderError(RuntimeError):
    """LibreOffice could not render a workbook, or the tools the check needs are missing."""


# --------------------------------------------------------------------------------------------------------------
# The checker's side (any Python with openpyxl)
# --------------------------------------------------------------------------------------------------------------

def check_workbook(path: Path, workdir: Path | None = None) -> list[Finding]:
    """Render one workbook with LibreOffice and return what a reader of its printed pages would trip over."""
    return check_workbooks([path], workdir=workdir)[Path(path)]


def check_workbooks(paths, workdir: Path | None = None, processes: int = 2,
                    timeout: float = 600) -> dict[Path, list[Finding]]:
    """check_workbook for many files: split over `processes` LibreOffice processes, each rendering its share
    in one load-export-report loop. The PDFs stay in `workdir` (next to NNN.layout.json) for a look."""
    paths = [Path(p) for p in paths]
    missing_tools()
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="printcheck-")) if own else Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        rendered = render(paths, workdir, processes=processes, timeout=timeout)
        return {path: analyse(path, pdf, layout) for path, (pdf, layout) in rendered.items()}
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)


def missing_tools() -> None:
    """Raise RenderError naming what the check needs and this machine lacks."""
    lacking = [tool for tool in ("soffice", "pdftotext") if shutil.which(tool) is None]
    if _uno_python() is None:
        lacking.append("python3-uno")
    if shutil.which("fc-match"):
        if "carlito" not in _fc_match("Calibri").lower():
            lacking.append("fonts-crosextra-carlito (Calibri's metrics)")
        if not _fc_match(":lang=zh-cn").strip():
            lacking.append("a CJK font (fonts-wqy-zenhei)")
    if lacking:
        raise RenderError("print check needs: " + ", ".join(lacking))


def _fc_match(pattern: str) -> str:
    if pattern.startswith(":"):
        out = subprocess.run(["fc-list", pattern, "family"], capture_output=True, text=True)
    else:
        out = subprocess.run(["fc-match", pattern], capture_output=True, text=True)
    return out.stdout


def _uno_python() -> str | None:
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(candidate).exists() and subprocess.run([candidate, "-c", "import uno"],
                                                       capture_output=True).returncode == 0:
            return candidate
    return None


def render(paths: list[Path], workdir: Path, processes: int = 2, timeout: float = 600) -> dict[Path, tuple[Path, dict]]:
    """Every workbook → (its PDF, the layout LibreOffice printed it by), `processes` soffice at a time."""
    python = _uno_python()
    if python is None:
        raise RenderError("print check needs python3-uno")
    jobs = []
    shares = [paths[i::processes] for i in range(max(1, processes))]
    for n, share in enumerate(shares):
        if not share:
            continue
        listing = workdir / f"batch{n}.json"
        listing.write_text(json.dumps([[str(p.resolve()), f"{paths.index(p):03d}"] for p in share]), encoding="utf-8")
        jobs.append(subprocess.Popen([python, str(Path(__file__).resolve()), "--render", str(workdir), str(listing)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + timeout
    failures = []
    for job in jobs:
        try:
            out, err = job.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            job.kill()
            out, err = job.communicate()
            failures.append(f"LibreOffice took longer than {timeout:.0f} s")
            continue
        if job.returncode != 0:
            failures.append((err or out).strip()[-2000:])
    if failures:
        raise RenderError("\n".join(failures))
    result = {}
    for i, path in enumerate(paths):
        pdf, layout = workdir / f"{i:03d}.pdf", workdir / f"{i:03d}.layout.json"
        if not pdf.exists() or not layout.exists():
            raise RenderError(f"LibreOffice rendered nothing for {path}")
        result[path] = (pdf, json.loads(layout.read_text(encoding="utf-8")))
    return result


@dataclass
class Word:
    text: str
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def xc(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def yc(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass
class Cell:
    row: int
    col: int
    text: str
    number: bool
    wrap: bool
    hori: str  # LEFT, RIGHT, CENTER (STANDARD resolved by type)
    vert: str  # TOP, CENTER, BOTTOM
    size: float  # pt
    indent: float  # pt
    last_row: int = -1
    last_col: int = -1
    flat: str = ""  # the text without white space, as pdftotext's words join up

    def __post_init__(self):
        self.flat = _flat(self.text)

    @property
    def ref(self) -> str:
        return f"{column_letter(self.col)}{self.row + 1}"


def column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def pdf_words(pdf: Path) -> list[tuple[float, float, list[Word]]]:
    """pdftotext -bbox: per page its width, height and words."""
    out = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RenderError(f"pdftotext failed on {pdf}: {out.stderr.strip()}")
    pages = []
    for block in re.finditer(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', out.stdout, re.S):
        words = [Word(html.unescape(m.group(5)), *map(float, m.group(1, 2, 3, 4)))
                 for m in re.finditer(r'<word xMin="([\d.-]+)" yMin="([\d.-]+)" xMax="([\d.-]+)" yMax="([\d.-]+)">'
                                      r'(.*?)</word>', block.group(3))]
        pages.append((float(block.group(1)), float(block.group(2)), words))
    return pages


def _workbook_extras(path: Path) -> dict[str, dict]:
    """From the file itself: merged ranges and the cells left unlocked for a unit to fill (input cells), which
    hold something even while empty."""
    import openpyxl

    wb = openpyxl.load_workbook(path)
    extras = {}
    for ws in wb.worksheets:
        merged = [(m.min_row - 1, m.min_col - 1, m.max_row - 1, m.max_col - 1) for m in ws.merged_cells.ranges]
        inputs = set()
        if ws.protection.sheet:
            for (row, col), cell in ws._cells.items():
                if cell.has_style and cell.protection is not None and cell.protection.locked is False:
                    inputs.add((row - 1, col - 1))
        extras[ws.title] = {"merged": merged, "inputs": inputs, "a3": str(ws.page_setup.paperSize or "") == "8"}
    return extras


def analyse(path: Path, pdf: Path, layout: dict) -> list[Finding]:
    """The findings for one rendered workbook: its PDF's words against the layout LibreOffice printed by."""
    name = Path(path).name
    pages = pdf_words(pdf)
    if len(pages) != len(layout["pages"]):
        raise RenderError(f"{name}: the PDF has {len(pages)} pages, LibreOffice's renderer {len(layout['pages'])}")
    extras = _workbook_extras(path)
    findings: list[Finding] = []
    by_sheet: dict[int, list[int]] = {}
    for number, page in enumerate(layout["pages"]):
        by_sheet.setdefault(page["sheet"], []).append(number)
    for sheet_index, numbers in by_sheet.items():
        sheet = layout["sheets"][sheet_index]
        extra = extras.get(sheet["name"], {"merged": [], "inputs": set(), "a3": False})
        findings += SheetCheck(name, sheet, extra, [(n, layout["pages"][n], pages[n]) for n in numbers]).run()
    return findings


class SheetCheck:
    """One sheet's printed pages against its cells."""

    def __init__(self, workbook: str, sheet: dict, extra: dict, pages: list):
        self.workbook, self.sheet, self.extra, self.pages = workbook, sheet, extra, pages
        self.name = sheet["name"]
        self.style = {k: v / HMM_PER_PT if isinstance(v, int | float) and not isinstance(v, bool) and k not in
                      ("PageScale", "ScaleToPages", "ScaleToPagesX", "ScaleToPagesY") else v
                      for k, v in sheet["style"].items()}
        self.widths = {int(k): v[0] / HMM_PER_PT for k, v in sheet["cols"].items() if v[1]}
        self.heights = {int(k): v[0] / HMM_PER_PT for k, v in sheet["rows"].items() if v[1]}
        self.cells: dict[tuple[int, int], Cell] = {}
        for row, col, text, number, wrap, hori, vert, size, indent in sheet["cells"]:
            self.cells[(row, col)] = Cell(row, col, text, number, wrap, hori, vert, size, indent / HMM_PER_PT, row, col)
        self.covered: dict[tuple[int, int], tuple[int, int]] = {}  # every cell of a merged range → its top left
        for r0, c0, r1, c1 in extra["merged"]:
            for r in range(r0, r1 + 1):
                for c in range(c0, c1 + 1):
                    self.covered[(r, c)] = (r0, c0)
            if (r0, c0) in self.cells:
                self.cells[(r0, c0)].last_row, self.cells[(r0, c0)].last_col = r1, c1

    def finding(self, where: str, what: str, measured: str) -> Finding:
        return Finding(self.workbook, self.name, where, what, measured)

    def holds_something(self, row: int, col: int) -> bool:
        top_left = self.covered.get((row, col), (row, col))
        return top_left in self.cells or top_left in self.extra["inputs"] or (row, col) in self.covered

    def run(self) -> list[Finding]:
        findings = []
        grids = [self.grid(page["range"]) for _, page, _ in self.pages]
        zoom = self.find_zoom(grids)
        grids = self.settle_rows(grids, zoom)
        if zoom < MIN_SCALE - 1e-9:
            findings.append(self.finding("整表", "scale", f"printed at {zoom:.0%} (below {MIN_SCALE:.0%})"))
        for (number, _, (width, height, words)), grid in zip(self.pages, grids):
            where = f"第 {number + 1} 页"
            findings += self.paper(where, width, height)
            if not any(PAGE_NUMBER.search(line) for line in _lines(words)):
                findings.append(self.finding(where, "page-number", "no 第 N 页 on the page"))
            placed = self.place(grid, zoom, words, width, height)
            if placed is None:
                continue
            ok, total = placed["agreement"]
            if total and ok * 2 < total:
                findings.append(self.finding(where, "unplaced", f"only {ok} of {total} cells' words where the grid puts "
                                                               f"them at {zoom:.0%}; page not judged"))
                continue
            findings += self.judge(where, placed, zoom)
        return findings

    # -- paper ------------------------------------------------------------------------------------------------
    def paper(self, where: str, width: float, height: float) -> list[Finding]:
        size = sorted((width, height))

        def near(paper):
            return abs(size[0] - paper[0]) <= PAPER_TOLERANCE and abs(size[1] - paper[1]) <= PAPER_TOLERANCE

        if near(A4) or (near(A3) and self.extra["a3"]):
            return []
        named = "A3 (not declared)" if near(A3) else f"{width:.0f} × {height:.0f} pt"
        if abs(size[0] - 612) <= PAPER_TOLERANCE and abs(size[1] - 792) <= PAPER_TOLERANCE:
            named = "US Letter"
        return [self.finding(where, "paper", f"{named}, not A4")]

    # -- the grid ---------------------------------------------------------------------------------------------
    def settle_rows(self, grids: list[dict], zoom: float) -> list[dict]:
        """Where each page really starts. LibreOffice's renderer reports the rows of a page as its own page
        breaks put them; the PDF export measures on another device, and over a long sheet its pages drift
        several rows from those. Each later page's first row is taken as the one (of the reported and SHIFTS
        either side) that puts the texts found once on the page at the vertical offset of the page's title
        rows, or where it has none, of the sheet's first page."""
        settled = list(grids)
        first = None
        for i, ((_, _, (width, height, words)), grid) in enumerate(zip(self.pages, grids)):
            c0, r0, c1, r1 = grid["range"]
            previous = settled[i - 1]["range"] if i else None
            if previous is None or (previous[0], previous[2]) != (c0, c1) or previous[1] >= r0:
                titles, body = self.offsets(grid, zoom, words, width, height)
                if first is None and titles + body:
                    first = statistics.median(titles + body)
                continue
            choices = []
            for shift in sorted(range(-SHIFTS, SHIFTS + 1), key=abs):
                start = r0 + shift
                if not previous[1] < start <= r1:
                    continue
                candidate = self.grid((c0, start, c1, r1))
                titles, body = self.offsets(candidate, zoom, words, width, height)
                expected = statistics.median(titles) if titles else first
                if body and expected is not None:
                    choices.append((round(abs(statistics.median(body) - expected), 1), abs(shift), candidate))
            if not choices and (first is not None or titles):
                # no text on the page is found once: count the cells that have a word of their own text
                # inside their box
                for shift in sorted(range(-SHIFTS, SHIFTS + 1), key=abs):
                    start = r0 + shift
                    if previous[1] < start <= r1:
                        candidate = self.grid((c0, start, c1, r1))
                        titles, _ = self.offsets(candidate, zoom, words, width, height)
                        offset = statistics.median(titles) if titles else first
                        choices.append((-self.cells_in_place(candidate, zoom, words, width, height, offset),
                                        abs(shift), candidate))
            if choices:
                best = min(choices, key=lambda c: c[:2])[2]
                settled[i] = best
                settled[i - 1] = self.grid((previous[0], previous[1], previous[2], best["range"][1] - 1))
        return settled

    def cells_in_place(self, grid, zoom, words, width, height, offset: float) -> int:
        """How many of the grid's cells below its title rows have a word of their own text inside their box."""
        x0, y0 = self.origin(grid, zoom, width, height)
        y0 += offset
        titles = self.sheet.get("title_rows") or (-1, -1)
        placed = 0
        for cell in self.cells.values():
            b = self.box(cell, grid)
            if b is None or not cell.flat or titles[0] <= cell.row <= titles[1]:
                continue
            left, top, right, bottom = x0 + zoom * b[0], y0 + zoom * b[1], x0 + zoom * b[2], y0 + zoom * b[3]
            placed += any(left <= w.xc <= right and top <= w.yc <= bottom and _flat(w.text) in cell.flat
                          for w in words)
        return placed

    def offsets(self, grid, zoom, words, width, height) -> tuple[list[float], list[float]]:
        """How far below the grid's rows the texts printed once on the page and once in the grid are: for
        the title rows and for the others."""
        x0, y0 = self.origin(grid, zoom, width, height)
        by_text = self._by_text(words)
        anchors = self.anchors(grid)
        counts = Counter(cell.flat for cell, _ in anchors)
        titles = self.sheet.get("title_rows") or (-1, -1)
        found: tuple[list[float], list[float]] = ([], [])
        for cell, b in anchors:
            candidates = by_text.get(cell.flat, ())
            if len(candidates) != 1 or counts[cell.flat] != 1:
                continue
            side, x = self.predicted(cell, b, zoom, x0)
            if abs(getattr(candidates[0], side) - x) <= ANCHOR_TOLERANCE:
                title = titles[0] <= cell.row <= titles[1] and grid["range"][1] > titles[1]
                found[0 if title else 1].append(self.vertical_residual(cell, b, zoom, y0, candidates[0]))
        return found

    def grid(self, cells_range) -> dict:
        """Column and row positions on the page at 100%, from the page's cell range and the title rows."""
        c0, r0, c1, r1 = cells_range
        titles = self.sheet.get("title_rows")
        rows = []
        if titles and r0 > titles[1]:
            rows += list(range(titles[0], titles[1] + 1))
        rows += list(range(r0, r1 + 1))
        title_cols = self.sheet.get("title_cols")
        cols = []
        if title_cols and c0 > title_cols[1]:
            cols += list(range(title_cols[0], title_cols[1] + 1))
        cols += list(range(c0, c1 + 1))
        xs, x = {}, 0.0
        for c in cols:
            if c in self.widths:
                xs[c] = (x, x + self.widths[c])
                x += self.widths[c]
        ys, y = {}, 0.0
        for r in rows:
            if r in self.heights:
                ys[r] = (y, y + self.heights[r])
                y += self.heights[r]
        return {"xs": xs, "ys": ys, "width": x, "height": y, "range": tuple(cells_range)}

    def origin(self, grid: dict, zoom: float, page_width: float, page_height: float) -> tuple[float, float]:
        s = self.style
        x0 = s["LeftMargin"]
        if s["CenterHorizontally"]:
            x0 += (page_width - s["LeftMargin"] - s["RightMargin"] - zoom * grid["width"]) / 2
        # the header's area is scaled with the sheet and grows to hold its line and the distance below it; its
        # line's height is the font's (taken as 11 pt at 1.3): the anchors correct what this misses
        header = footer = 0.0
        if s["HeaderIsOn"] and s["HeaderHeight"] > 0:
            header = zoom * max(s["HeaderHeight"], 11 * 1.3 + s["HeaderBodyDistance"])
        if s["FooterIsOn"] and s["FooterHeight"] > 0:
            footer = zoom * max(s["FooterHeight"], 11 * 1.3 + s["FooterBodyDistance"])
        y0 = s["TopMargin"] + header
        if s["CenterVertically"]:
            y0 += (page_height - y0 - s["BottomMargin"] - footer - zoom * grid["height"]) / 2
        return x0, y0

    def box(self, cell: Cell, grid: dict) -> tuple[float, float, float, float] | None:
        """The cell's (merged range's) box at 100% relative to the printed area, or None where not printed."""
        xs = [grid["xs"][c] for c in range(cell.col, cell.last_col + 1) if c in grid["xs"]]
        ys = [grid["ys"][r] for r in range(cell.row, cell.last_row + 1) if r in grid["ys"]]
        if cell.col not in grid["xs"] or cell.row not in grid["ys"]:
            return None
        return xs[0][0], ys[0][0], xs[-1][1], ys[-1][1]

    def anchors(self, grid: dict) -> list[tuple[Cell, tuple]]:
        """Cells whose whole text is one word: printed on one line, it sits where the alignment puts it, and so
        places the grid."""
        if "anchors" in grid:
            return grid["anchors"]
        out = grid["anchors"] = []
        for cell in self.cells.values():
            if not cell.flat or cell.flat != cell.text.strip():
                continue  # a text of several words may be split or wrapped: it cannot say where its cell is
            b = self.box(cell, grid)
            if b is not None:
                out.append((cell, b))
        return out

    def predicted(self, cell: Cell, b, zoom: float, x0: float) -> tuple[str, float]:
        pad = (CELL_PADDING + cell.indent) * zoom
        if cell.hori == "RIGHT":
            return "x1", x0 + zoom * b[2] - CELL_PADDING * zoom
        if cell.hori == "CENTER":
            return "xc", x0 + zoom * (b[0] + b[2]) / 2
        return "x0", x0 + zoom * b[0] + pad

    def find_zoom(self, grids: list[dict]) -> float:
        """The sheet's zoom: its page style's scale, or for fit-to-pages the whole percent that puts most
        anchor cells' words where their alignment says."""
        s = self.style
        fit = bool(s["ScaleToPagesX"] or s["ScaleToPagesY"] or s["ScaleToPages"])
        candidates = range(10, 101) if fit else [int(s["PageScale"])]
        best = (-1, 100)
        for percent in candidates:
            zoom = percent / 100
            agreed = 0
            for (_, _, (width, height, words)), grid in zip(self.pages, grids):
                agreed += self.agreement(grid, zoom, words, width, height)[0]
            if agreed > best[0]:
                best = (agreed, percent)
        return best[1] / 100

    def agreement(self, grid, zoom, words, width, height) -> tuple[int, int, float]:
        """How many anchor cells have a word of their text where the grid at `zoom` puts it across the page, of
        how many whose text is on the page as one word; and how far down the rows must move to meet the anchors
        whose text is on the page once (the header's height is not exactly known)."""
        x0, y0 = self.origin(grid, zoom, width, height)
        by_text = self._by_text(words)
        anchors = self.anchors(grid)
        if "once" not in grid:
            grid["once"] = {text for text, n in Counter(cell.flat for cell, _ in anchors).items() if n == 1}
        once = grid["once"]
        hits, total, dys = 0, 0, []
        for cell, b in anchors:
            candidates = by_text.get(cell.flat)
            if not candidates:
                continue  # wrapped onto several lines, or cut: judged below, not used to place the grid
            total += 1
            side, x = self.predicted(cell, b, zoom, x0)
            edges = self._edges(words, cell.flat, side)
            at = bisect.bisect_left(edges, x - ANCHOR_TOLERANCE)
            if at < len(edges) and edges[at] <= x + ANCHOR_TOLERANCE:
                hits += 1
                if len(candidates) == 1 and cell.flat in once:
                    dys.append(self.vertical_residual(cell, b, zoom, y0, candidates[0]))
        return hits, total, statistics.median(dys) if dys else 0.0, len(dys)

    def _by_text(self, words: list[Word]) -> dict[str, list[Word]]:
        cache = self.__dict__.setdefault("_words_by_text", {})
        if id(words) not in cache:
            by_text: dict[str, list[Word]] = {}
            for w in words:
                by_text.setdefault(w.text, []).append(w)
            cache[id(words)] = (words, by_text)
        return cache[id(words)][1]

    def _edges(self, words: list[Word], text: str, side: str) -> list[float]:
        """The sorted left edges, right edges or middles of the page's words reading `text`."""
        cache = self.__dict__.setdefault("_edges_cache", {})
        key = (id(words), text, side)
        if key not in cache:
            cache[key] = sorted(getattr(w, side) for w in self._by_text(words).get(text, ()))
        return cache[key]

    @staticmethod
    def vertical_residual(cell: Cell, b, zoom: float, y0: float, w: Word) -> float:
        if cell.vert == "TOP":
            return w.y0 - (y0 + zoom * b[1])
        if cell.vert == "CENTER":
            return w.yc - (y0 + zoom * (b[1] + b[3]) / 2)
        return w.y1 - (y0 + zoom * b[3])

    # -- words to cells ---------------------------------------------------------------------------------------
    def place(self, grid, zoom, words, width, height) -> dict | None:
        if not grid["xs"] or not grid["ys"]:
            return None
        x0, y0 = self.origin(grid, zoom, width, height)
        hits, total, dy, _ = self.agreement(grid, zoom, words, width, height)
        y0 += dy
        area = (x0, y0, x0 + zoom * grid["width"], y0 + zoom * grid["height"])
        st = self.style
        footer = zoom * max(st["FooterHeight"], 11 * 1.3 + st["FooterBodyDistance"]) \
            if st["FooterIsOn"] and st["FooterHeight"] > 0 else 0.0
        bottom = height - st["BottomMargin"] - footer  # where the page's cells must end
        lost = sorted(r for r, (top, end) in grid["ys"].items() if y0 + zoom * end > bottom + 2)
        boxes = {}
        for cell in self.cells.values():
            b = self.box(cell, grid)
            if b is not None and cell.row not in lost:
                boxes[(cell.row, cell.col)] = (x0 + zoom * b[0], y0 + zoom * b[1], x0 + zoom * b[2], y0 + zoom * b[3])
        assigned: dict[tuple[int, int], list[Word]] = {}
        hashes = []
        for w in words:
            if w.yc < area[1] - 1 or w.yc > area[3] + 1:
                continue  # header or footer
            if set(w.text) == {"#"}:
                hashes.append(w)
                continue
            for piece, key in self.attribute(w, boxes, zoom):
                if key is not None:
                    assigned.setdefault(key, []).append(piece)
        columns = {c: (x0 + zoom * xl, x0 + zoom * xr) for c, (xl, xr) in grid["xs"].items()}
        return {"boxes": boxes, "assigned": assigned, "hashes": hashes, "area": area, "agreement": (hits, total),
                "origin": (x0, y0), "columns": columns, "lost": lost}

    def owner(self, w: Word, boxes: dict, zoom: float) -> tuple[int, int] | None:
        """The cell a word belongs to: of the cells whose text contains it and that could have drawn it there,
        the nearest. A non-wrapping text stays on its row but may run sideways across the page; a wrapped
        one stays in its columns but may run over the rows above or below, as far as its lines reach."""
        text = _flat(w.text)
        best, best_distance = None, None
        for key, b in boxes.items():
            cell = self.cells[key]
            if not text or text not in cell.flat:
                continue
            dx = self.across(cell, b, w, text, zoom)
            dy = max(b[1] - w.yc, 0, w.yc - b[3])
            line = 1.3 * cell.size * zoom
            if cell.wrap:
                lines = len(cell.flat) * cell.size * zoom / max(b[2] - b[0], cell.size * zoom) + 1
                if dx > (b[2] - b[0]) / 2 or dy > lines * line:
                    continue
            elif dy > line / 2:
                continue
            distance = dx + 3 * dy  # a word strays sideways (overflow) more often than into another row
            if best is None or distance < best_distance:
                best, best_distance = key, distance
        return best

    @staticmethod
    def across(cell: Cell, b, w: Word, text: str, zoom: float) -> float:
        """How far, across the page, a word is from where its cell would draw it. A non-wrapping text is
        anchored by its alignment (its start at the left edge, its end at the right, its middle in the middle)
        and may run on past the other edge; a wrapped one stays within its box."""
        pad = CELL_PADDING * zoom
        if not cell.wrap:
            if cell.hori == "LEFT" and cell.flat.startswith(text):
                return abs(w.x0 - (b[0] + pad + cell.indent * zoom))
            if cell.hori == "RIGHT" and cell.flat.endswith(text):
                return abs(w.x1 - (b[2] - pad))
            if cell.hori == "CENTER" and cell.flat == text:
                return abs(w.xc - (b[0] + b[2]) / 2)
            # a later word of the text: within the cell's edge and as far from it as the text is long
            # (estimated generously: CJK one em, others 0.55 em, a quarter more)
            reach = 1.25 * sum(map(_char_width, cell.flat)) * cell.size * zoom + 2 * pad
            if cell.hori == "LEFT":
                return max(b[0] - w.x0, 0, w.x1 - (b[0] + reach))
            if cell.hori == "RIGHT":
                return max(w.x1 - b[2], 0, (b[2] - reach) - w.x0)
            middle = (b[0] + b[2]) / 2
            return max(middle - reach / 2 - w.x0, 0, w.x1 - (middle + reach / 2))
        return max(b[0] - w.xc, 0, w.xc - b[2])

    def attribute(self, w: Word, boxes: dict, zoom: float) -> list[tuple[Word, tuple[int, int] | None]]:
        """The word, or its pieces, each with the cell it belongs to. pdftotext joins the texts of two cells
        into one word where one ends as the next begins (a text cut at its neighbour, say); such a word is
        split into the fewest pieces that are each part of a cell's text, each piece getting its share of the
        word's width by its characters (CJK full width, others about half)."""
        key = self.owner(w, boxes, zoom)
        text = _flat(w.text)
        if key is not None or len(text) < 2:
            return [(w, key)]
        pieces = _split(text, [self.cells[k].flat for k, b in boxes.items()
                               if b[1] - 2 <= w.yc <= b[3] + 2 and b[0] - 2 < w.x1 and b[2] + 2 > w.x0])
        if not pieces:
            return [(w, None)]
        widths = [_char_width(ch) for ch in text]
        scale = (w.x1 - w.x0) / sum(widths)
        out, start, x = [], 0, w.x0
        for piece in pieces:
            width = sum(widths[start:start + len(piece)]) * scale
            part = Word(piece, x, w.y0, x + width, w.y1)
            out.append((part, self.owner(part, boxes, zoom)))
            start, x = start + len(piece), x + width
        return out

    # -- judging ----------------------------------------------------------------------------------------------
    def judge(self, where: str, placed: dict, zoom: float) -> list[Finding]:
        findings = []
        boxes, assigned = placed["boxes"], placed["assigned"]
        if placed["lost"]:
            rows = placed["lost"]
            findings.append(self.finding(where, "not-printed", f"rows {rows[0] + 1}–{rows[-1] + 1} fall below the "
                                         "page's printable area and are on no page (LibreOffice's PDF export lays "
                                         "the fit-to-width sheet out with fewer rows a page than it counted pages for)"))
        for key, b in boxes.items():
            cell = self.cells[key]
            words = assigned.get(key, [])
            if not cell.flat:
                continue
            width, height = (b[2] - b[0]) / zoom, (b[3] - b[1]) / zoom
            if cell.number and not words:
                hashes = [h for h in placed["hashes"] if b[0] - 1 <= h.xc <= b[2] + 1 and b[1] - 1 <= h.yc <= b[3] + 1]
                if hashes:
                    findings.append(self.finding(cell.ref, "hashes", f"{cell.text!r} printed as ###: column "
                                                                    f"{width:.1f} pt wide"))
                    continue
            shown = "".join(_flat(w.text) for w in sorted(words, key=lambda w: (round(w.yc), w.x0)))
            missing = len(shown) < len(cell.flat)
            if not cell.wrap:
                runs = self.runs_into(cell, b, words, placed) if words else []
                if missing or runs:
                    told = [f"shows {shown!r} of {cell.text!r}"] if missing else []
                    if runs:
                        right = max(w.x1 for w in words) - b[2]
                        left = b[0] - min(w.x0 for w in words)
                        told.append(f"text {max(left, right) / zoom:.1f} pt wider than its {width:.1f} pt cell runs "
                                    f"into {', '.join(runs)}")
                    findings.append(self.finding(cell.ref, "too-wide", "; ".join(told)))
            elif missing:
                findings.append(self.finding(cell.ref, "cut", f"shows {shown!r} of {cell.text!r} "
                                                              f"(wrapped in a {width:.1f} × {height:.1f} pt cell)"))
            if not words:
                continue
            top = min(w.y0 + 0.15 * w.height for w in words)
            bottom = max(w.y1 - 0.15 * w.height for w in words)
            slack = max(2.0, 0.15 * cell.size * zoom)
            if top < b[1] - slack or bottom > b[3] + slack:
                lines = len({round(w.yc) for w in words})
                findings.append(self.finding(cell.ref, "taller", f"{lines} line(s) need {(bottom - top) / zoom:.1f} pt, "
                                             f"the row gives {height:.1f} pt (drawn {max(b[1] - top, 0) / zoom:.1f} pt "
                                             f"above it, {max(bottom - b[3], 0) / zoom:.1f} pt below)"))
        return findings

    def runs_into(self, cell: Cell, b, words: list[Word], placed: dict) -> list[str]:
        """Where a non-wrapping text past its cell's edges lands: neighbours that hold something, or off the
        printed area. LibreOffice either clips it there (fewer words) or, deciding with screen metrics, draws it
        over the neighbour; either way the reader loses it."""
        area, columns = placed["area"], placed["columns"]
        left, right = min(w.x0 for w in words), max(w.x1 for w in words)
        own = range(cell.col, cell.last_col + 1)
        found = []
        for side, reach in (("right", (b[2], right)), ("left", (left, b[0]))):
            if reach[1] - reach[0] <= OVERLAP_TOLERANCE:
                continue
            if (side == "right" and right > area[2] + OVERLAP_TOLERANCE) or \
                    (side == "left" and left < area[0] - OVERLAP_TOLERANCE):
                found.append("the edge of the printed area")
            found += [f"{column_letter(c)}{r + 1}" for c, (xl, xr) in columns.items() if c not in own
                      and xl < reach[1] - OVERLAP_TOLERANCE and xr > reach[0] + OVERLAP_TOLERANCE
                      for r in range(cell.row, cell.last_row + 1) if self.holds_something(r, c)]
        return found


def _char_width(ch: str) -> float:
    import unicodedata

    return 1.0 if unicodedata.east_asian_width(ch) in "WF" else 0.55


def _split(text: str, sources: list[str]) -> list[str] | None:
    """`text` cut into the fewest pieces that are each part of one of `sources`, or None."""
    best: list[list[str] | None] = [None] * (len(text) + 1)
    best[0] = []
    for end in range(1, len(text) + 1):
        for start in range(end):
            if best[start] is not None and any(text[start:end] in source for source in sources):
                if best[end] is None or len(best[start]) + 1 < len(best[end]):
                    best[end] = best[start] + [text[start:end]]
    return best[-1]


def _lines(words: list[Word]) -> list[str]:
    """The page's text line by line (words whose centres are within 2 pt of each other), for searching."""
    rows: list[list[Word]] = []
    for w in sorted(words, key=lambda w: w.yc):
        if rows and abs(rows[-1][0].yc - w.yc) <= 2:
            rows[-1].append(w)
        else:
            rows.append([w])
    return [" ".join(w.text for w in sorted(row, key=lambda w: w.x0)) for row in rows]


def report(results: dict[Path, list[Finding]], base: Path | None = None) -> str:
    """One line per finding, grouped by workbook (its path below `base`, or its name) and sheet."""
    out = []
    for path, findings in results.items():
        if not findings:
            continue
        shown = Path(path).relative_to(base) if base and Path(path).is_relative_to(base) else Path(path).name
        out.append(f"== {shown}")
        sheet = None
        for f in findings:
            if f.sheet != sheet:
                sheet = f.sheet
                out.append(f"  -- {sheet}")
            out.append(f"    {f.where} | {f.what} | {f.measured}")
    return "\n".join(out) + ("\n" if out else "")


# --------------------------------------------------------------------------------------------------------------
# The LibreOffice side: run by the Python that has uno (Debian's /usr/bin/python3), one process per batch
# --------------------------------------------------------------------------------------------------------------

def _render_main(outdir: str, listing: str) -> None:  # pragma: no cover - runs outside pytest's interpreter
    import uuid

    import uno
    from com.sun.star.beans import PropertyValue

    def prop(name, value):
        p = PropertyValue()
        p.Name, p.Value = name, value
        return p

    files = json.loads(Path(listing).read_text(encoding="utf-8"))
    pipe = "printcheck_" + uuid.uuid4().hex[:10]
    profile = tempfile.mkdtemp(prefix="printcheck-profile-")
    soffice = subprocess.Popen(["soffice", "--headless", "--invisible", "--norestore", "--nologo", "--nodefault",
                                f"-env:UserInstallation={Path(profile).as_uri()}", f"--accept=pipe,name={pipe};urp;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=os.name == "posix")  # its soffice.bin ends with the group
    try:
        local = uno.getComponentContext()
        resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
        deadline = time.monotonic() + 60
        while True:
            try:
                ctx = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
                break
            except Exception:
                if time.monotonic() > deadline or soffice.poll() is not None:
                    raise SystemExit("LibreOffice did not start") from None
                time.sleep(0.1)
        desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
        for source, stem in files:
            doc = desktop.loadComponentFromURL(uno.systemPathToFileUrl(source), "_blank", 0,
                                               (prop("Hidden", True), prop("ReadOnly", True)))
            if doc is None:
                raise SystemExit(f"LibreOffice could not open {source}")
            try:
                layout = _layout(doc, prop)
                pdf = Path(outdir) / f"{stem}.pdf"
                doc.storeToURL(uno.systemPathToFileUrl(str(pdf)), (prop("FilterName", "calc_pdf_Export"),))
                (Path(outdir) / f"{stem}.layout.json").write_text(json.dumps(layout, ensure_ascii=False),
                                                                   encoding="utf-8")
            finally:
                doc.close(True)
        try:
            desktop.terminate()
        except Exception:
            pass
    finally:
        _end(soffice)
        shutil.rmtree(profile, ignore_errors=True)


def _end(soffice: subprocess.Popen) -> None:  # pragma: no cover - runs outside pytest's interpreter
    """End the LibreOffice this batch started: the soffice wrapper returns when told to terminate, but its
    soffice.bin can outlive it, so on POSIX the whole process group it was started in is ended."""
    try:
        soffice.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    if os.name == "posix":
        import signal

        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(soffice.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            time.sleep(0.5)
    if soffice.poll() is None:
        soffice.kill()
        soffice.wait()


def _layout(doc, prop) -> dict:  # pragma: no cover - runs outside pytest's interpreter
    options = (prop("IsPrinter", True),)
    pages = []
    for i in range(doc.getRendererCount(doc, options)):
        info = {p.Name: p.Value for p in doc.getRenderer(i, doc, options)}
        a = info["SourceRange"]
        pages.append({"sheet": a.Sheet, "range": [a.StartColumn, a.StartRow, a.EndColumn, a.EndRow],
                      "size": [info["PageSize"].Width, info["PageSize"].Height]})
    sheets = []
    styles = doc.StyleFamilies.getByName("PageStyles")
    for index in range(doc.Sheets.Count):
        sheet = doc.Sheets.getByIndex(index)
        entry = {"name": sheet.Name, "cols": {}, "rows": {}, "cells": [], "style": {}}
        sheets.append(entry)
        mine = [p["range"] for p in pages if p["sheet"] == index]
        if not mine:
            continue
        style = styles.getByName(sheet.PageStyle)
        entry["style"] = dict(zip(STYLE_PROPERTIES, style.getPropertyValues(STYLE_PROPERTIES)))
        if sheet.getPrintTitleRows():
            t = sheet.getTitleRows()
            entry["title_rows"] = [t.StartRow, t.EndRow]
        if sheet.getPrintTitleColumns():
            t = sheet.getTitleColumns()
            entry["title_cols"] = [t.StartColumn, t.EndColumn]
        last_col = max(r[2] for r in mine)
        last_row = max(r[3] for r in mine)
        columns, rows = sheet.Columns, sheet.Rows
        for c in range(last_col + 1):
            col = columns.getByIndex(c)
            entry["cols"][c] = [col.Width, bool(col.IsVisible)]
        for r in range(last_row + 1):
            row = rows.getByIndex(r)
            entry["rows"][r] = [row.Height, bool(row.IsVisible)]
        area = sheet.getCellRangeByPosition(0, 0, last_col, last_row)
        for cell in area.queryContentCells(1 | 2 | 4 | 16).Cells:  # values, dates, strings, formulas
            a = cell.CellAddress
            wrap, hori, vert, size, result, indent, rotate, shrink = cell.getPropertyValues(CELL_PROPERTIES)
            kind = cell.getType().value
            number = kind == "VALUE" or (kind == "FORMULA" and result == 1)
            hori = hori.value
            if hori in ("STANDARD", "REPEAT"):
                hori = "RIGHT" if number else "LEFT"
            elif hori == "BLOCK":
                hori = "LEFT"
            vert = {1: "TOP", 2: "CENTER"}.get(vert, "BOTTOM")  # CellVertJustify2: 0 standard, 3 bottom, 4 block
            entry["cells"].append([a.Row, a.Column, cell.getString(), number, bool(wrap),
                                   hori, vert, float(size), int(indent)])
    return {"pages": pages, "sheets": sheets}


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) == 4 and sys.argv[1] == "--render":
        _render_main(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit("usage: python3 printcheck.py --render OUTDIR LISTING.json")
