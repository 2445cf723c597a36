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
    """A workbook cannot be read at all; carries a short code for reports."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
