"""Exceptions mean "cannot go on"; problems found in a filled form are data (see validate.Problem)."""


class PerfxlError(Exception):
    """Base class: a user-caused error with a message fit to print."""


class SpecError(PerfxlError):
    """A template could not be rendered or does not describe a valid form."""


class UnknownTemplate(SpecError):
    """No template of that name in the templates folders."""


class RosterError(PerfxlError):
    """The roster file is missing, unreadable or lacks a required column."""


class OutputError(PerfxlError):
    """An output file or folder cannot be written."""


class ReadError(PerfxlError):
    """A workbook cannot be read at all: a code of the problem catalogue and its parameters."""

    def __init__(self, code: str, **params):
        from .problems import problem

        self.problem = problem(code, **params)
        self.code = code
        super().__init__(self.problem.text("zh"))


class InputNotFound(PerfxlError, FileNotFoundError):
    """A file or folder named as an input does not exist (or cannot be looked at): said in Chinese with
    its path, and still a FileNotFoundError for callers that catch that."""


def missing_input(exc: OSError) -> InputNotFound:
    """The error for an input that could not be looked at (inbox.scan's FileNotFoundError), in Chinese
    with its path, never Python's `[Errno 2] No such file or directory: 'x'`."""
    import errno

    path = exc.filename if exc.filename is not None else (exc.args[0] if exc.args else "")
    if exc.errno in (None, errno.ENOENT):
        return InputNotFound(f"找不到文件或文件夹 (no such file or folder): {path}")
    return InputNotFound(f"无法访问 (cannot open) {path}：{os_reason(exc)}")


_OS_REASONS = {
    "ENOENT": "找不到该文件或文件夹", "EACCES": "没有权限", "EPERM": "没有权限", "ENOSPC": "磁盘已满",
    "EDQUOT": "超出磁盘配额", "EROFS": "磁盘或文件夹是只读的", "ENAMETOOLONG": "路径或文件名太长",
    "EISDIR": "这是文件夹，不是文件", "ENOTDIR": "路径中有一段不是文件夹", "EEXIST": "已经存在",
    "EBUSY": "正被其他程序使用", "ETXTBSY": "正被其他程序使用", "EMFILE": "打开的文件太多",
    "ENFILE": "打开的文件太多", "EIO": "读写磁盘出错", "ELOOP": "符号链接绕成了环", "EINVAL": "路径或文件名无效",
}


def os_reason(exc: OSError) -> str:
    """Why an operation on a file failed, in Chinese, with the system's own words after it
    (`[Errno 2] No such file or directory: 'x'` is not something a clerk reads)."""
    import errno

    chinese = _OS_REASONS.get(errno.errorcode.get(exc.errno or 0, ""), "")
    system = exc.strerror or (exc.args[0] if exc.args and isinstance(exc.args[0], str) else "")
    if chinese and system:
        return f"{chinese} ({system})"
    return chinese or system or "无法访问"
