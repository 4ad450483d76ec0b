"""Exceptions a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class FedrecError(Exception):
    """Base class for errors caused by user input (files, flags, budgets)."""


class DataError(FedrecError):
    """A data file is unusable.

    The message always names the file and, where it applies, the row (1-based, as a
    spreadsheet counts data rows after the header) and the column.
    """

    def __init__(self, path: object, problem: str, row: int | None = None,
                 column: str | None = None) -> None:
        self.path = str(path)
        self.row = row
        self.column = column
        self.problem = problem
        where = [self.path]
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column '{column}'")
        super().__init__(f"{', '.join(where)}: {problem}")


class ConfigError(FedrecError):
    """A configuration value or command-line flag is invalid."""
