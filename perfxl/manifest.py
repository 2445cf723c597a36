"""manifest.json: what `perfxl generate` handed out in a folder. One shape for blank forms and follow-up
forms (自评表, 监控表), so `perfxl serve --forms` and scripts read either the same way:

    {"manifest": 2, "kind": "blank" | "followup", "template": "national/selfeval", "year": 2022,
     "title": "项目支出绩效自评表", "from": "汇总_报送台账.sqlite" (follow-ups: the declaration ledger),
     "forms": [{"unit_code", "unit_name", "department", "file", "access_code",
                "projects": [...] (follow-ups: the declared projects prefilled)}, ...],
     "without_declaration": [{"unit_code", "unit_name"}, ...] (follow-ups: units that got no form)}

Every form gets an access code for the portal, listed with its unit in the printable 分发清单.xlsx;
generating again into the same folder keeps the codes already given. The reader also accepts the two
shapes earlier versions wrote (a bare list of blank forms; a dict of follow-up forms without codes), so a
folder made before keeps working.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import xlsxwriter

from .errors import OutputError, PerfxlError
from .files import write_bytes_atomic
from .formparts import FILL_LABEL

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

    def to_json(self) -> dict:
        out = {"manifest": SHAPE, "kind": self.kind, "template": self.template, "year": self.year,
               "title": self.title}
        if self.source is not None:
            out["from"] = self.source
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
    try:
        forms = read_manifest(folder).forms
    except PerfxlError:
        return {}
    return {str(e["unit_code"]): str(e["access_code"]) for e in forms if e.get("access_code")}


def write_manifest(folder: Path, manifest: Manifest, protected: set[str] | None = None) -> Manifest:
    """Give every form without one an access code (the one this folder already gave its unit, else a new
    one), then write manifest.json and 分发清单.xlsx. `protected` are real paths never written over (inputs)."""
    folder = Path(folder)
    for target in (MANIFEST_FILE, HANDOUT_FILE):
        if os.path.realpath(folder / target) in (protected or set()):
            raise OutputError(f"输出目录中的 {target} 是输入文件，perfxl 不会覆盖它: {folder / target}")
    kept = previous_access_codes(folder)
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
                            [e for e in raw.get("without_declaration") or [] if isinstance(e, dict)])
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


def _handout(manifest: Manifest) -> bytes:
    """分发清单.xlsx: one printable line per unit with its form's file and its portal access code."""
    buffer = io.BytesIO()
    wb = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_numbers": False})
    ws = wb.add_worksheet("分发清单")
    title = wb.add_format({"bold": True, "font_size": 14})
    head = wb.add_format({"bold": True, "border": 1, "bg_color": FILL_LABEL})
    cell = wb.add_format({"border": 1, "num_format": "@"})
    code = wb.add_format({"border": 1, "num_format": "@", "font_name": "Consolas", "bold": True})
    what = manifest.title or manifest.template or ""
    ws.write_string(0, 0, f"{manifest.year}年度 {what} 分发清单（访问码请单独交给各单位，勿外传）", title)
    file_header = "空白表文件" if manifest.kind == "blank" else "下发的表（已预填）"
    for c, (text, width) in enumerate((("单位编码", 12), ("单位名称", 30), ("主管部门", 20), (file_header, 50),
                                       ("访问码", 14))):
        ws.write_string(2, c, text, head)
        ws.set_column(c, c, width)
    for r, e in enumerate(manifest.forms, start=3):
        for c, key in enumerate(("unit_code", "unit_name", "department", "file")):
            ws.write_string(r, c, str(e.get(key) or ""), cell)
        ws.write_string(r, 4, e["access_code"], code)
    ws.repeat_rows(2)
    ws.set_landscape()
    ws.fit_to_pages(1, 0)
    wb.close()
    return buffer.getvalue()
