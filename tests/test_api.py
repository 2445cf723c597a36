"""The public Python API, used with nothing but `import perfxl`: what an analyst at a bureau would write."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import perfxl


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from perfxl.demo import run_demo

    folder = tmp_path_factory.mktemp("api") / "demo"
    return run_demo(folder, echo=lambda *a: None) | {"folder": folder}


def test_public_names_are_listed_and_resolve():
    for name in perfxl.__all__:
        assert getattr(perfxl, name) is not None
    assert {"load_template", "generate", "validate", "merge", "open_ledger"} <= set(perfxl.__all__)


def test_api_functions_are_not_shadowed_by_the_stage_modules():
    import perfxl.generator  # noqa: F401 - importing a stage module must not replace the API function
    import perfxl.merging  # noqa: F401
    import perfxl.validator  # noqa: F401

    assert callable(perfxl.generate) and perfxl.generate.__module__ == "perfxl.api"
    assert perfxl.merge.__module__ == "perfxl.api" and perfxl.validate.__module__ == "perfxl.api"


def test_load_template_and_generate(tmp_path):
    spec = perfxl.load_template("national/project", year=2025, region="某市")
    assert spec.year == 2025 and "某市" in spec.title
    roster = tmp_path / "名单.csv"
    roster.write_text("code,name,department\n001,甲单位,某部门\n002,乙单位,某部门\n", encoding="utf-8")
    manifest = perfxl.generate("national/project", roster, tmp_path / "blank", year=2025)
    assert len(manifest) == 2 and all((tmp_path / "blank" / m["file"]).is_file() for m in manifest)


def test_validate_returns_what_validate_json_prints(demo):
    inbox = demo["folder"] / "2-收件箱"
    target = sorted(inbox.rglob("*游仙区文化*"))[0]
    report = perfxl.validate(target)
    assert report["status"] == "errors" and report["problems"]
    from perfxl.cli import cli as command_line

    cli = json.loads(CliRunner().invoke(command_line, ["validate", str(target), "--json"]).output)["files"][0]
    assert report == cli
    english = perfxl.validate(target, lang="en")
    assert english["problems"][0]["code"] == report["problems"][0]["code"]
    assert english["problems"][0]["message"] != report["problems"][0]["message"]


def test_validate_never_raises_on_a_bad_file(tmp_path):
    bad = tmp_path / "坏.xlsx"
    bad.write_bytes(b"not a workbook at all")
    report = perfxl.validate(bad, lang="en")
    assert report["status"] == "rejected" and report["problems"][0]["code"] == "not-a-workbook"


def test_merge_a_folder_and_read_the_ledger_back_as_dataframes(demo, tmp_path):
    inbox = demo["folder"] / "2-收件箱"
    result = perfxl.merge(inbox, tmp_path / "汇总.xlsx", roster=demo["folder"] / "名单.csv", jobs=1)
    c = result.counts
    assert c["files_in"] == c["merged"] + c["rejected"] + c["duplicate"] + c["superseded"] + c["excluded"]
    assert result.accounting.startswith(f"收到 {c['files_in']} = 已汇总 {c['merged']}")
    detail = [row for row in result.table("指标明细").rows]
    assert len(detail) == c["indicators"] > 0

    with perfxl.open_ledger(tmp_path / "汇总_报送台账.sqlite") as ledger:
        indicators = ledger.indicators()
        assert len(indicators) == len(detail)
        assert list(indicators.columns) == [title for title, _ in result.table("指标明细").columns]
        assert _plain(indicators) == _cells(detail)
        projects = ledger.projects()
        listed = [row for row in result.table("项目清单").rows if row[0] != "合计"]
        assert len(projects) == c["projects"] == len(listed)
        assert _plain(projects) == _cells(listed)
        submissions = ledger.submissions()
        assert len(submissions) == c["files_in"]
        assert set(submissions["处理"]) <= {"已汇总", "无法读取", "重复文件", "已被更新版本取代", "未汇总（不符合本次汇总条件）"}
        problems = ledger.problems()
        assert len(problems) == len(result.table("校验问题").rows)


def _plain(frame) -> list[list]:
    """DataFrame rows with pandas' missing values (None, NaN, <NA>) back as None."""
    import pandas as pd

    return [[None if pd.isna(v) else v for v in row] for row in frame.astype(object).values.tolist()]


def _cells(rows) -> list[list]:
    """A summary's rows as its sheets show them: an empty text is an empty cell."""
    return [[None if v == "" else v for v in row] for row in rows]


def test_submissions_speak_chinese_with_integer_years_like_the_other_frames(demo, tmp_path):
    """ledger.submissions() once had English column names (path, outcome, …) and a float year (2021.0)
    because a rejected file has none."""
    perfxl.merge(demo["inbox"], tmp_path / "汇总.xlsx", roster=demo["roster"], jobs=1)
    with perfxl.open_ledger(tmp_path / "汇总_报送台账.sqlite") as ledger:
        submissions = ledger.submissions()
    assert list(submissions.columns) == ["文件", "处理", "原因", "代码", "对应文件", "单位编码", "单位名称", "模板", "年度",
                                         "校验状态", "错误数", "提醒数", "文件大小", "修改时间", "sha256"]
    assert str(submissions["年度"].dtype) == "Int64" and str(submissions["错误数"].dtype) == "Int64"
    assert submissions["年度"].dropna().tolist() == [2021] * submissions["年度"].notna().sum()
    broken = submissions[submissions["代码"] == "file-corrupt"].iloc[0]
    assert broken["处理"] == "无法读取" and broken["原因"].startswith("文件已损坏") and pd_isna(broken["年度"])
    merged = submissions[submissions["处理"] == "已汇总"]
    assert merged["原因"].isna().all() and (merged["年度"] == 2021).all()
    assert str(submissions["修改时间"].dtype).startswith("datetime64")


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_an_empty_cell_is_missing_in_the_frames_as_in_the_workbook_and_parquet(demo, tmp_path):
    """indicators() and problems() once had '' where the workbook has an empty cell and Parquet a null."""
    import pandas as pd

    pytest.importorskip("pyarrow")
    perfxl.merge(demo["inbox"], tmp_path / "汇总.xlsx", roster=demo["roster"], jobs=1, parquet_dir=tmp_path / "pq")
    with perfxl.open_ledger(tmp_path / "汇总_报送台账.sqlite") as ledger:
        frames = {"指标明细": ledger.indicators(), "校验问题": ledger.problems(), "项目清单": ledger.projects()}
    for name, frame in frames.items():
        assert not (frame.astype(object) == "").any().any(), f"{name} has '' for an empty cell"
        parquet = pd.read_parquet(tmp_path / "pq" / f"{name}.parquet")
        parquet = parquet[parquet.iloc[:, 0] != "合计"].reset_index(drop=True)
        assert list(frame.columns) == list(parquet.columns)
        assert frame.isna().equals(parquet.isna()), f"{name}: missing values differ from the Parquet file's"
        assert _plain(frame) == _plain(parquet)
    assert frames["指标明细"].isna().any().any(), "the demo's 指标明细 has empty cells to compare"


def test_open_ledger_refuses_what_is_not_a_ledger(tmp_path):
    other = tmp_path / "other.sqlite"
    other.write_bytes(b"plain text")
    with pytest.raises(perfxl.PerfxlError):
        perfxl.open_ledger(other)
    with pytest.raises(perfxl.PerfxlError):
        perfxl.open_ledger(tmp_path / "missing.sqlite")


def test_an_in_process_merge_gives_the_caller_its_address_space_limit_back(tmp_path):
    """A merge with jobs=1 caps its own process while it reads (one hostile file must not exhaust the
    machine), and must lift the cap after: it once stayed, and a browser started later crashed."""
    resource = pytest.importorskip("resource")
    from perfxl.merging import MergeOptions, run_merge

    before = resource.getrlimit(resource.RLIMIT_AS)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.xlsx").write_bytes(b"not a workbook")
    run_merge([tmp_path / "in"], tmp_path / "s.xlsx", MergeOptions(jobs=1))
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def test_a_merge_of_a_missing_folder_raises_perfxl_error_naming_it(tmp_path):
    """A missing input once escaped the API as Python's FileNotFoundError ("[Errno 2] …")."""
    with pytest.raises(perfxl.PerfxlError, match="找不到文件或文件夹") as raised:
        perfxl.merge(tmp_path / "收件箱", tmp_path / "汇总.xlsx")
    assert str(tmp_path / "收件箱") in str(raised.value) and "Errno" not in str(raised.value)
    assert sorted(tmp_path.iterdir()) == []


def test_generate_with_an_unknown_template_creates_nothing(tmp_path):
    """perfxl.generate() once made the output folder, then found the template unknown and left it empty."""
    roster = tmp_path / "名单.csv"
    roster.write_text("code,name,department\n001,甲单位,某部门\n", encoding="utf-8")
    with pytest.raises(perfxl.PerfxlError, match="未知模板"):
        perfxl.generate("没有/这个模板", roster, tmp_path / "空白表", year=2025)
    assert not (tmp_path / "空白表").exists()
    from perfxl.cli import cli as command_line

    result = CliRunner().invoke(command_line, ["generate", "没有/这个模板", "--year", "2025", "--roster", str(roster),
                                               "-o", str(tmp_path / "空白表")])
    assert result.exit_code == 2 and "未知模板" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["名单.csv"]
