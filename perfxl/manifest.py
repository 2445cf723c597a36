"""manifest.json: what `perfxl generate` handed out in a folder. One shape for blank forms and follow-up
forms (自评表, 监控表), so `perfxl serve --forms` and scripts read either the same way:

    {"manifest": 2, "kind": "blank" | "followup", "template": "national/selfeval", "year": 2022,
     "title": "项目支出绩效自评表", "from": "汇总_报送台账.sqlite" (follow-ups: the declaration ledger),
     "portal_url": "http://192.168.1.10:8000/" | null, "deadline": "2022-03-31" | null,
     "forms": [{"unit_code", "unit_name", "department", "file", "access_code",
                "projects": [...] (follow-ups: the declared projects prefilled)}, ...],
     "without_declaration": [{"unit_code", "unit_name"}, ...] (follow-ups: units that got no form)}

Every form gets an access code for the portal, listed with its unit in the printable 分发清单.xlsx: A4,
titled with the form's Chinese title and year, saying where the portal is and by when to hand in (or,
plainly, that neither is fixed yet). Generating again into the same folder keeps the codes, the portal's
address and the deadline already given. The reader also accepts the two shapes earlier versions wrote (a
bare list of blank forms; a dict of follow-up forms without codes), so a folder made before keeps working.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from .errors import OutputError, PerfxlError
from .files import write_bytes_atomic
from .formparts import FILL_LABEL, rows_needed, text_px, wrap_text
from .xlsxsafe import SafeWorkbook

MANIFEST_FILE = "manifest.json"
HANDOUT_FILE = "分发清单.xlsx"
SHAPE = 2
KINDS = ("blank", "followup")
MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # 100,000 units take about 30 MB
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud over the phone


@dataclass
class Manifest:
    kind: str  # "blank" | "followup"
    template: str | None
    year: int | None
    forms: list[dict]
    title: str | None = None
    source: str | None = None  # the ledger a follow-up round was generated from
    without_declaration: list[dict] = field(default_factory=list)
    portal_url: str | None = None  # where units hand in (perfxl serve), printed on the handout
    deadline: str | None = None  # ISO date to hand in by, printed on the handout

    def to_json(self) -> dict:
        out = {"manifest": SHAPE, "kind": self.kind, "template": self.template, "year": self.year,
               "title": self.title}
        if self.source is not None:
            out["from"] = self.source
        out["portal_url"] = self.portal_url
        out["deadline"] = self.deadline
        out["forms"] = self.forms
        out["without_declaration"] = self.without_declaration
        return out

    def by_unit(self) -> dict[str, dict]:
        """unit code → its form's entry."""
        return {str(e["unit_code"]): e for e in self.forms}


def new_access_code() -> str:
    """A unit's code for the submission portal (perfxl serve): 10 characters, about 49 bits."""
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))


def previous_access_codes(folder: Path) -> dict[str, str]:
    """The codes a folder's manifest already gave, whatever its shape; none if it has no readable one."""
    previous = _previous(folder)
    forms = previous.forms if previous else []
    return {str(e["unit_code"]): str(e["access_code"]) for e in forms if e.get("access_code")}


def _previous(folder: Path) -> Manifest | None:
    try:
        return read_manifest(folder)
    except PerfxlError:
        return None


def check_portal_url(url: str) -> str:
    """The portal's address as units type it into a browser: http(s)://host[:port][/path]."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text):
        raise PerfxlError(f"报送网址“{url}”无效：应为 http:// 或 https:// 开头的完整地址，例如 http://192.168.1.10:8000/ "
                          f"(the portal's address must be a full http(s) URL)")
    return text


def write_manifest(folder: Path, manifest: Manifest, protected: set[str] | None = None) -> Manifest:
    """Give every form without one an access code (the one this folder already gave its unit, else a new
    one), keep the portal's address and the deadline this folder already gave when none is given, then
    write manifest.json and 分发清单.xlsx. `protected` are real paths never written over (inputs)."""
    folder = Path(folder)
    for target in (MANIFEST_FILE, HANDOUT_FILE):
        if os.path.realpath(folder / target) in (protected or set()):
            raise OutputError(f"输出目录中的 {target} 是输入文件，perfxl 不会覆盖它: {folder / target}")
    previous = _previous(folder)
    kept = previous_access_codes(folder)
    if previous is not None:
        manifest.portal_url = manifest.portal_url or previous.portal_url
        manifest.deadline = manifest.deadline or previous.deadline
    for entry in manifest.forms:
        if not entry.get("access_code"):
            entry["access_code"] = kept.get(str(entry["unit_code"])) or new_access_code()
    try:
        write_bytes_atomic(folder / MANIFEST_FILE,
                           json.dumps(manifest.to_json(), ensure_ascii=False, indent=1).encode("utf-8"))
        write_bytes_atomic(folder / HANDOUT_FILE, _handout(manifest))
    except OSError as exc:
        raise OutputError(f"无法写入 (cannot write) {folder / MANIFEST_FILE}: {exc.strerror or exc}") from None
    return manifest


def read_manifest(folder: Path) -> Manifest:
    """A folder's manifest.json in any shape perfxl wrote; a Chinese error for a missing or damaged one."""
    path = Path(folder) / MANIFEST_FILE
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise PerfxlError(f"{path} 过大，不是 perfxl generate 写出的清单")
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise PerfxlError(f"{Path(folder)} 中没有 manifest.json：请先用 perfxl generate 生成要下发的表 "
                          f"(no manifest.json in {folder})") from None
    except OSError as exc:
        raise PerfxlError(f"无法读取 {path}: {exc.strerror or exc}") from None
    except (ValueError, RecursionError):
        raise PerfxlError(f"{path} 已损坏（不是有效的 JSON），请重新运行 perfxl generate 生成") from None
    if isinstance(raw, list):  # blank forms, before the shapes were one
        manifest = Manifest("blank", None, None, raw)
    elif isinstance(raw, dict) and isinstance(raw.get("forms"), list):
        kind = raw.get("kind") if raw.get("kind") in KINDS else "followup"  # a dict without kind: follow-ups
        manifest = Manifest(kind, _text(raw.get("template")), _year(raw.get("year")), raw["forms"],
                            _text(raw.get("title")), _text(raw.get("from")),
                            [e for e in raw.get("without_declaration") or [] if isinstance(e, dict)],
                            _portal_url(raw.get("portal_url")), _iso_date(raw.get("deadline")))
    else:
        raise PerfxlError(f"{path} 不是 perfxl generate 写出的清单（应有 forms 列表）")
    forms = []
    for entry in manifest.forms:
        if not isinstance(entry, dict) or not entry.get("unit_code") or not isinstance(entry.get("file"), str):
            raise PerfxlError(f"{path} 中有一项缺少单位编码或文件名，请重新运行 perfxl generate 生成")
        code = entry.get("access_code")
        forms.append({**entry, "unit_code": str(entry["unit_code"]),
                      "access_code": str(code) if isinstance(code, str | int) and str(code) else None})
    manifest.forms = forms
    return manifest


def _text(value) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None


def _year(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _portal_url(value) -> str | None:
    """A manifest's portal address if it is one (the file may have been edited by hand): else none."""
    try:
        return check_portal_url(value) if isinstance(value, str) and value else None
    except PerfxlError:
        return None


def _iso_date(value) -> str | None:
    try:
        return date.fromisoformat(value).isoformat() if isinstance(value, str) else None
    except ValueError:
        return None


_WEEKDAYS = "一二三四五六日"
HANDOUT_FONT = "宋体"
HANDOUT_SIZE = 11
HANDOUT_WIDTH = 138  # characters (7 px in Excel) across A4 landscape inside half-inch margins, at 100 %


def handout_lines(manifest: Manifest) -> list[str]:
    """What the handout says above its table: the form and year, where to hand in, by when, and that the
    codes are the units' own; said plainly when the portal's address or the deadline is not fixed yet."""
    what = manifest.title or manifest.template or "报表"
    year = f"{manifest.year}年度" if manifest.year else ""
    if manifest.deadline:
        day = date.fromisoformat(manifest.deadline)
        deadline = f"截止日期：{day.year}年{day.month}月{day.day}日（星期{_WEEKDAYS[day.weekday()]}）"
    else:
        deadline = "截止日期：尚未确定，将另行通知"
    portal = f"报送网址：{manifest.portal_url}" if manifest.portal_url else "报送网址：尚未确定，将另行通知"
    return [f"{year}{what} 分发清单", portal, deadline,
            "各单位在报送网页上用本单位的单位编码和访问码登录，下载本单位的表，填好后在同一网页上传。"
            "访问码只交给本单位，请勿外传。"]


def _handout(manifest: Manifest) -> bytes:
    """分发清单.xlsx: what a clerk receives on paper. A4 landscape, one page wide at 100 %, the header
    repeated on every page with 第 N 页; each unit's line with its file and its access code, every column
    wide enough for its longest entry or wrapped in a row tall enough for it."""
    buffer = io.BytesIO()
    wb = SafeWorkbook(buffer, {"in_memory": True, "strings_to_numbers": False, "strings_to_urls": False,
                               "strings_to_formulas": False})
    ws = wb.add_worksheet("分发清单")
    base = {"font_name": HANDOUT_FONT, "font_size": HANDOUT_SIZE, "valign": "vcenter", "text_wrap": True}
    title = wb.add_format({**base, "bold": True, "font_size": 16, "align": "center"})
    note = wb.add_format({**base})
    strong = wb.add_format({**base, "bold": True})
    head = wb.add_format({**base, "bold": True, "border": 1, "bg_color": FILL_LABEL, "align": "center"})
    cell = wb.add_format({**base, "border": 1, "num_format": "@"})
    code = wb.add_format({**base, "border": 1, "num_format": "@", "font_name": "Consolas", "font_size": 12,
                          "bold": True, "align": "center"})
    file_header = "空白表文件" if manifest.kind == "blank" else "下发的表（已预填）"
    # (header, key, narrowest): each column as wide as its longest entry; when they do not fit across the
    # page, the file, name and department columns give way (in that order) and their entries wrap
    columns = [("单位编码", "unit_code", 10), ("单位名称", "unit_name", 16), ("主管部门", "department", 12),
               (file_header, "file", 24), ("访问码", "access_code", 16)]
    widths = [max([least] + [_width(str(e.get(key) or ""), HANDOUT_SIZE) for e in manifest.forms])
              for _, key, least in columns]
    excess = sum(widths) - HANDOUT_WIDTH
    for i in (3, 1, 2, 0):
        cut = max(0, min(excess, widths[i] - columns[i][2]))
        widths[i] -= cut
        excess -= cut
    last = len(columns) - 1
    lines = handout_lines(manifest)
    for r, text in enumerate(lines):
        style = title if r == 0 else strong if r in (1, 2) else note
        size = 16 if r == 0 else HANDOUT_SIZE
        ws.merge_range(r, 0, r, last, text, style)
        ws.set_row(r, max(rows_needed(len(wrap_text(text, widths, size, r == 0)), size), 30 if r == 0 else 18))
    header_row = len(lines) + 1
    for c, ((text, _, _), width) in enumerate(zip(columns, widths)):
        ws.write_string(header_row, c, text, head)
        ws.set_column(c, c, width)
    ws.set_row(header_row, rows_needed(1, HANDOUT_SIZE) + 4)
    for r, e in enumerate(manifest.forms, start=header_row + 1):
        texts = [str(e.get(key) or "") for _, key, _ in columns]
        for c, text in enumerate(texts[:-1]):
            ws.write_string(r, c, text, cell)
        ws.write_string(r, last, texts[-1], code)
        lines_needed = max(len(wrap_text(t, [w], HANDOUT_SIZE)) for t, w in zip(texts, widths))
        ws.set_row(r, max(rows_needed(lines_needed, HANDOUT_SIZE), 22))
    ws.repeat_rows(header_row)
    ws.print_area(0, 0, header_row + max(1, len(manifest.forms)), last)
    ws.set_paper(9)
    ws.set_landscape()
    ws.fit_to_pages(1, 0)  # already one page wide at 100 %; a renderer with wider columns shrinks a little
    ws.set_margins(left=0.5, right=0.5, top=0.6, bottom=0.7)
    ws.center_horizontally()
    ws.set_footer("&C第 &P 页，共 &N 页")
    wb.close()
    return buffer.getvalue()


def _width(text: str, size: float) -> int:
    """The column width (characters of the default font, 7 px each in Excel) that shows the text whole."""
    return -(-int(text_px(text, size) + 1) // 7) + 1
