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
