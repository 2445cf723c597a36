"""manifest.json: one shape for blank forms and follow-up forms, access codes and 分发清单.xlsx for both,
codes kept when generating again, and folders written by earlier versions still read."""

from __future__ import annotations

import json

import openpyxl
import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.errors import PerfxlError
from perfxl.manifest import HANDOUT_FILE, read_manifest

from .conftest import write_roster
from .portal_setup import UNITS, YEAR, followup_forms, set_up

A, B, C = (u[0] for u in UNITS)


@pytest.fixture(scope="module")
def rounds(tmp_path_factory):
    base = tmp_path_factory.mktemp("rounds")
    setup = set_up(base)
    return {"base": base, "setup": setup, "selfeval": followup_forms(base, setup, "national/selfeval"),
            "monitor": followup_forms(base / "monitor", setup, "national/monitor")}


def _raw(folder):
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def _handout_table(folder) -> list[tuple]:
    """The handout's table, from its header row (单位编码, …) down."""
    rows = list(openpyxl.load_workbook(folder / HANDOUT_FILE)["分发清单"].iter_rows(values_only=True))
    return rows[next(i for i, row in enumerate(rows) if row[0] == "单位编码"):]


def test_blank_and_followup_folders_write_one_manifest_shape_with_access_codes(rounds):
    shapes = {}
    for kind, folder in (("blank", rounds["setup"]["forms"]), ("followup", rounds["selfeval"]),
                         ("followup", rounds["monitor"])):
        raw = _raw(folder)
        assert raw["manifest"] == 2 and raw["kind"] == kind and raw["year"] == YEAR
        shapes.setdefault("top", set(raw)).intersection_update(raw)
        for entry in raw["forms"]:
            assert {"unit_code", "unit_name", "department", "file", "access_code"} <= set(entry)
            assert len(entry["access_code"]) == 10 and (folder / entry["file"]).is_file()
        listed = {row[0]: row[4] for row in _handout_table(folder)[1:]}
        assert listed == {e["unit_code"]: e["access_code"] for e in raw["forms"]}
    assert {"manifest", "kind", "template", "year", "forms", "without_declaration"} <= shapes["top"]
    followup = _raw(rounds["selfeval"])
    assert [e["unit_code"] for e in followup["forms"]] == [A, B]
    assert [e["unit_code"] for e in followup["without_declaration"]] == [C]  # it declared nothing


def test_generating_followups_again_into_the_same_folder_keeps_the_access_codes(rounds, tmp_path):
    base, setup = rounds["base"], rounds["setup"]
    first = {e["unit_code"]: e["access_code"] for e in _raw(rounds["selfeval"])["forms"]}
    r = CliRunner().invoke(cli, ["generate", "national/selfeval", "--year", str(YEAR), "--roster", str(setup["roster"]),
                                 "--from", str(base / "申报汇总_报送台账.sqlite"), "-o", str(rounds["selfeval"])])
    assert r.exit_code == 0, r.output
    assert "分发清单.xlsx" in r.output
    assert {e["unit_code"]: e["access_code"] for e in _raw(rounds["selfeval"])["forms"]} == first


def test_the_reader_accepts_the_shapes_earlier_versions_wrote(rounds, tmp_path):
    blank = [{"unit_code": A, "unit_name": "甲", "department": "部门", "file": "a.xlsx", "access_code": "ABCDEFGHJK"}]
    (tmp_path / "old-blank").mkdir()
    (tmp_path / "old-blank" / "manifest.json").write_text(json.dumps(blank, ensure_ascii=False), encoding="utf-8")
    old = read_manifest(tmp_path / "old-blank")
    assert (old.kind, old.forms[0]["access_code"], old.by_unit()[A]["file"]) == ("blank", "ABCDEFGHJK", "a.xlsx")

    followup = {"template": "national/selfeval", "year": YEAR, "from": "x.sqlite",
                "forms": [{"unit_code": A, "unit_name": "甲", "file": "a.xlsx", "projects": ["项目"]}],
                "without_declaration": [{"unit_code": C, "unit_name": "丙"}]}
    (tmp_path / "old-followup").mkdir()
    (tmp_path / "old-followup" / "manifest.json").write_text(json.dumps(followup, ensure_ascii=False), encoding="utf-8")
    old = read_manifest(tmp_path / "old-followup")
    assert (old.kind, old.template, old.year, old.source) == ("followup", "national/selfeval", YEAR, "x.sqlite")
    assert old.forms[0]["access_code"] is None and old.without_declaration[0]["unit_code"] == C


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"forms": 3}', '"text"', '[{"file": "a.xlsx"}]'])
def test_a_damaged_manifest_is_a_chinese_error_not_a_traceback(tmp_path, text):
    (tmp_path / "manifest.json").write_text(text, encoding="utf-8")
    with pytest.raises(PerfxlError, match="manifest.json|perfxl generate"):
        read_manifest(tmp_path)


# --- 分发清单.xlsx on paper ------------------------------------------------------------------------------------

LINE_PT = 12.4 * 1.1  # LibreOffice's height of one more line of Chinese at 11 pt


def _generate(tmp_path, *options):
    roster = write_roster(tmp_path / "名单.csv", [("510701001", "绵阳市住房公积金服务中心", "绵阳市住房和城乡建设局"),
                                                 ("510702002", "绵阳市社会保险事业管理局", "绵阳市人力资源和社会保障局")])
    out = tmp_path / "空白表"
    r = CliRunner().invoke(cli, ["generate", "mianyang/project", "--year", "2025", "--roster", str(roster), "-o", str(out),
                                 *options])
    return r, out


def _sheet(folder):
    return openpyxl.load_workbook(folder / HANDOUT_FILE)["分发清单"]


def _texts(ws) -> list[str]:
    return [str(v) for row in ws.iter_rows(values_only=True) for v in row if v is not None]


def test_the_handout_prints_on_a4_titled_with_the_forms_chinese_title_and_year(tmp_path):
    """It printed on US Letter, titled with the internal id "mianyang/project", without page numbers."""
    r, out = _generate(tmp_path)
    assert r.exit_code == 0, r.output
    ws = _sheet(out)
    assert ws["A1"].value == "2025年度项目支出绩效目标申报表 分发清单"
    assert not any("mianyang" in t for t in _texts(ws) if not t.endswith(".xlsx"))
    assert (ws.page_setup.paperSize, ws.page_setup.orientation) == (9, "landscape")
    assert "&P" in ws.oddFooter.center.text and ws.print_title_rows


def test_every_column_of_the_handout_shows_its_entries_whole(tmp_path):
    """The file column was 50 wide without wrapping: a form's file name ran off the printed page."""
    from perfxl.formparts import column_pixels, text_px, wrap_text

    r, out = _generate(tmp_path)
    ws = _sheet(out)
    widths = {c: ws.column_dimensions[openpyxl.utils.get_column_letter(c)].width for c in range(1, 6)}
    assert sum(column_pixels([w]) for w in widths.values()) <= (11.69 - 1.0) * 96  # across A4 landscape at 100 %
    start = next(c.row for c in ws["A"] if c.value == "单位编码")
    for row in ws.iter_rows(min_row=start):
        for cell in row:
            if cell.value is None:
                continue
            size, bold = cell.font.sz, bool(cell.font.b)
            if text_px(str(cell.value), size, bold) <= column_pixels([widths[cell.column]]) - 6:
                continue
            assert cell.alignment.wrap_text, (cell.coordinate, cell.value)
            lines = len(wrap_text(str(cell.value), [widths[cell.column]], size, bold))
            assert ws.row_dimensions[cell.row].height >= lines * LINE_PT, (cell.coordinate, cell.value)


def test_the_handout_says_where_the_portal_is_and_the_deadline_and_keeps_them(tmp_path):
    r, out = _generate(tmp_path, "--portal-url", "http://192.168.1.10:8000/", "--deadline", "2025-03-31")
    assert r.exit_code == 0, r.output
    texts = _texts(_sheet(out))
    assert "报送网址：http://192.168.1.10:8000/" in texts and "截止日期：2025年3月31日（星期一）" in texts
    assert (_raw(out)["portal_url"], _raw(out)["deadline"]) == ("http://192.168.1.10:8000/", "2025-03-31")
    codes = {e["unit_code"]: e["access_code"] for e in _raw(out)["forms"]}
    again = CliRunner().invoke(cli, ["generate", "mianyang/project", "--year", "2025", "--roster",
                                     str(tmp_path / "名单.csv"), "-o", str(out)])
    assert again.exit_code == 0 and "报送网址：http://192.168.1.10:8000/" in again.output
    assert "报送网址：http://192.168.1.10:8000/" in _texts(_sheet(out))
    assert {e["unit_code"]: e["access_code"] for e in _raw(out)["forms"]} == codes


def test_the_handout_says_plainly_when_the_portal_and_deadline_are_not_known(tmp_path):
    r, out = _generate(tmp_path)
    texts = _texts(_sheet(out))
    assert "报送网址：尚未确定，将另行通知" in texts and "截止日期：尚未确定，将另行通知" in texts
    assert "--portal-url" in r.output and "--deadline" in r.output


@pytest.mark.parametrize("option, value, words", [("--portal-url", "192.168.1.10:8000", "http://"),
                                                   ("--portal-url", "http:// 空格", "http://"),
                                                   ("--deadline", "2025/3/31", "YYYY-MM-DD"),
                                                   ("--deadline", "2025-02-30", "YYYY-MM-DD")])
def test_a_wrong_portal_address_or_deadline_is_refused_in_chinese(tmp_path, option, value, words):
    r, out = _generate(tmp_path, option, value)
    assert r.exit_code == 2 and words in r.output and not out.exists()


def test_a_followup_handout_carries_the_portal_and_deadline_too(rounds, tmp_path):
    base, setup = rounds["base"], rounds["setup"]
    out = tmp_path / "自评表"
    r = CliRunner().invoke(cli, ["generate", "national/selfeval", "--year", str(YEAR), "--roster", str(setup["roster"]),
                                 "--from", str(base / "申报汇总_报送台账.sqlite"), "-o", str(out),
                                 "--portal-url", "https://bb.example.gov.cn/perfxl/", "--deadline", "2023-06-30"])
    assert r.exit_code == 0, r.output
    texts = _texts(_sheet(out))
    assert texts[0] == f"{YEAR}年度项目支出绩效自评表 分发清单"
    assert "报送网址：https://bb.example.gov.cn/perfxl/" in texts and "截止日期：2023年6月30日（星期五）" in texts
    assert _handout_table(out)[0][3] == "下发的表（已预填）"
