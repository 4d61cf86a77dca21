"""Exceptions raised by sparse_reg.

Every error names the argument or file at fault and what was expected. The classes derive from the
built-in exception a user would catch anyway (``ValueError``, ``ImportError``, ...), so
``except ValueError`` keeps working while ``except sparse_reg.errors.DatasetError`` can be precise.
"""

from __future__ import annotations

__all__ = [
    "BackendMismatchError",
    "BackendUnavailableError",
    "CorruptDatasetError",
    "DatasetError",
    "DatasetNotFoundError",
    "NoClosedFormGradientError",
]


class BackendUnavailableError(ImportError):
    """The requested array library is not installed, or the device it needs is absent."""


class BackendMismatchError(TypeError):
    """Arrays from two different array libraries were mixed, or a device-library hop was implied."""

    @classmethod
    def mixed(cls, first: str, first_library: str, second: str, second_library: str) -> BackendMismatchError:
        """The error for argument ``second`` in another device library than argument ``first``."""
        return cls(
            f"{first} is a {first_library} array but {second} is a {second_library} array; "
            "pass both from one library, or convert with sparse_reg.backends.to_backend"
        )


class NoClosedFormGradientError(TypeError):
    """A user loss registered without a gradient was asked for one on a backend without autograd."""


class DatasetError(Exception):
    """Base class of dataset-loading errors."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset file or directory is missing; the message says how to obtain it."""


class CorruptDatasetError(DatasetError, ValueError):
    """A dataset file exists but is truncated, corrupted or not in the expected format."""
