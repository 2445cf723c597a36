"""A file that cannot be read gets one clear coded problem, and the run goes on with the next file."""

import io
import zipfile

import pytest
from click.testing import CliRunner

from perfxl.cli import cli
from perfxl.pipeline import CheckOptions, check_file


def _encrypted(tmp_path, seeds):
    msoffcrypto = pytest.importorskip("msoffcrypto")
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    with open(seeds["000-0"].filled, "rb") as fh:
        OOXMLFile(fh).encrypt("secret", out)
    assert msoffcrypto  # the real encryption, as Excel's "Encrypt with Password" writes it
    return out.getvalue()


CASES = {
    "not-a-zip": (lambda tmp, seeds: b"this is not a spreadsheet at all, just words", "not-a-workbook"),
    "empty": (lambda tmp, seeds: b"", "file-empty"),
    "truncated": (lambda tmp, seeds: seeds["000-0"].filled.read_bytes()[:3000], "file-corrupt"),
    "csv-renamed": (lambda tmp, seeds: "code,name\n1,单位\n".encode(), "not-a-workbook"),
    "html-renamed": (lambda tmp, seeds: b"<html><body><table><tr><td>1</td></tr></table></body></html>", "not-a-workbook"),
    "encrypted": (_encrypted, "file-encrypted"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_file_gets_one_coded_problem(tmp_path, seeds, case):
    make, code = CASES[case]
    path = tmp_path / f"{case}.xlsx"
    path.write_bytes(make(tmp_path, seeds))
    checked = check_file(path, CheckOptions())
    assert [(p.code, p.severity) for p in checked.problems] == [(code, "error")]
    assert checked.status == "rejected"


def test_zip_without_workbook(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("hello.txt", "hi")
    path = tmp_path / "x.xlsx"
    path.write_bytes(buffer.getvalue())
    assert check_file(path, CheckOptions()).read_error == "not-a-workbook"


def test_validate_carries_on_after_a_bad_file(tmp_path, seeds):
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(b"garbage")
    result = CliRunner().invoke(cli, ["validate", str(bad), str(seeds["003-0"].filled)])
    assert result.exit_code == 1
    assert "not-a-workbook" in result.output and "上海市公积金管理中心" in result.output
    assert "Traceback" not in result.output
