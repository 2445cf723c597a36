"""The output guard: perfxl overwrites only what it wrote itself, never an input, the roster, or anyone
else's file, and the inbox walk passes over its own outputs."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from perfxl.errors import OutputError
from perfxl.ledger import check_ledger_file
from perfxl.summary import CSV_FIRST_TITLES, SHEET_NAMES

from .options import MergeOptions


def default_db(output: Path) -> Path:
    return Path(output).with_name(Path(output).stem + "_报送台账.sqlite")


def is_own_output(path: Path, what: str) -> bool:
    """True when an existing file is one perfxl itself wrote as `what` (summary, ledger or a CSV)."""
    try:
        if what == "summary":
            from perfxl.report import SUMMARY_MARK

            with zipfile.ZipFile(path) as zf:
                return SUMMARY_MARK.encode() in zf.read("docProps/core.xml")
        if what == "parquet":  # the footer's metadata, read without any parquet library
            from perfxl.report import PARQUET_MARK

            with open(path, "rb") as fh:
                head = fh.read(4)
                fh.seek(max(0, path.stat().st_size - 65536))
                return head == b"PAR1" and PARQUET_MARK in fh.read()
        if what.startswith("csv:"):
            with open(path, "rb") as fh:
                head = fh.read(64)
            return head.startswith(("\ufeff" + CSV_FIRST_TITLES[what[4:]] + ",").encode("utf-8"))
    except (OSError, zipfile.BadZipFile, KeyError, OutputError):
        return False
    return False


def outputs(output: Path | None, db_path: Path | None, options: MergeOptions) -> list[tuple[str, Path]]:
    """What this merge writes, each as (what, path)."""
    targets: list[tuple[str, Path]] = []
    if output is not None:
        targets.append(("summary", output))
    if db_path is not None:
        targets.append(("ledger", db_path))
    if options.csv_dir:
        targets += [(f"csv:{name}", Path(options.csv_dir) / f"{name}.csv") for name in SHEET_NAMES]
    if options.parquet_dir:
        targets += [("parquet", Path(options.parquet_dir) / f"{name}.parquet") for name in SHEET_NAMES]
    return targets


_WHAT_ZH = {"summary": "汇总表 (-o)", "ledger": "报送台账 (--db)"}


def guard_outputs(targets: list[tuple[str, Path]], inputs: list[Path], options: MergeOptions) -> None:
    """perfxl overwrites only what it wrote itself: never an input, the roster, or anyone else's file."""
    def key(path) -> str:
        return os.path.normcase(os.path.realpath(path))

    named = {key(p) for p in inputs if not Path(p).is_dir()}
    if options.roster:
        named.add(key(options.roster))
    written: dict[str, str] = {}
    for what, target in targets:
        label = _WHAT_ZH.get(what, f"{'Parquet' if what == 'parquet' else 'CSV'} {target.name}")
        k = key(target)
        if k in named:
            raise OutputError(f"{label} {target} 是输入文件或名单，perfxl 不会覆盖输入；请换一个输出路径 "
                              f"(refusing to overwrite an input)")
        if k in written:
            raise OutputError(f"{label} 与 {written[k]} 是同一个文件 {target}；请换一个输出路径")
        written[k] = label
        if what == "ledger":
            check_ledger_file(target)  # refuses a foreign or non-SQLite file, saying which
        elif target.exists():
            if not is_own_output(target, what):
                raise OutputError(f"{label} {target} 已存在，且不是 perfxl 写出的文件，perfxl 不会覆盖它；"
                                  f"请换一个文件名或先移走它 (refusing to overwrite a file perfxl did not write)")
    if targets and targets[0][0] == "summary" and targets[0][1].suffix.lower() not in {".xlsx", ".xlsm"}:
        raise OutputError(f"汇总表应为 .xlsx 文件: {targets[0][1]}")


def own_outputs(targets: list[tuple[str, Path]], db_path: Path | None) -> set[Path]:
    """Every target, and the ledger's journals: the inbox walk passes over them."""
    own = {target for _, target in targets}
    if db_path is not None:
        own |= {db_path.with_name(db_path.name + suffix) for suffix in ("-wal", "-shm", "-journal")}
    return own
