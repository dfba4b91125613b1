"""Exception hierarchy. Every error the library raises on purpose is a RerankerError."""

from __future__ import annotations


class RerankerError(Exception):
    """Base class of every error raised by reranker on purpose."""


class DataError(RerankerError, ValueError):
    """Bad input data. The message names the file, the line (text files) or row, and the column."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = path
        self.row = row
        self.line = line
        self.column = column
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class UnknownIdError(DataError, KeyError):
    """A user or item id that the data does not hold (the message names the id and its column).

    Also a KeyError, so callers that look ids up mapping-style (`except KeyError`) keep working.
    """

    __str__ = Exception.__str__  # the plain message, not KeyError's quoted repr


class LimitError(DataError):
    """A size the user controls is past its bound (rows per batch, history items or candidates of
    one request, ...); the message names the field, the size and the bound."""


class FetchError(DataError):
    """Downloading, verifying or unpacking a public data set failed (`reranker data fetch`); the
    message names the URL or file and what to do."""


class ConfigError(RerankerError, ValueError):
    """A configuration value or file is invalid (the message names the field path)."""

    lines: list[tuple[str, str]] | None = None
    """``(dotted path, message)`` per problem when the error comes from validating a component
    config (`reranker.registry.validate`); None otherwise."""


class ModelError(RerankerError):
    """A model cannot be resolved, loaded or run (the message says what to install or fix)."""


class PromptError(RerankerError):
    """A prompt template is missing, malformed or rendered with bad variables."""


__all__ = ["RerankerError", "DataError", "FetchError", "UnknownIdError", "LimitError", "ConfigError", "ModelError", "PromptError"]
