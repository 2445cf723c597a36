"""Merge stage: every returned workbook → checked forms → the summary tables.

Files are read and validated in a pool of worker processes (worker), each file under a time and memory
limit. Results stream back to the main process, which records them in the ledger and spools them to a
temporary file (kept); only a small index stays in memory. Then each unit's version that counts is chosen
(versions), identical copies are counted once, and the tables are built for the report stage (run).

    options       MergeOptions, MergeResult
    worker        the pool, the per-file read and check, its FileResult; the portal's checker
    guard         what the merge may overwrite, and where its ledger goes by default
    versions      which version of a unit's file counts (the portal asks the same rule)
    rollup        a lower level's ledger or export as input (节点汇总)
    kept          what goes into the ledger as results come in, and the checks taken back from it
    render_ahead  the sheets' per-form parts rendered in workers (or where the forms are read)
    run           run_merge: the steps in order
"""

from .guard import default_db
from .options import MergeOptions, MergeResult
from .run import run_merge
from .worker import FileResult, check_upload, start_checker

__all__ = ["MergeOptions", "MergeResult", "FileResult", "run_merge", "default_db", "check_upload", "start_checker"]
