"""Exceptions of the runtime. Messages are one line and name the file and the problem."""
from __future__ import annotations


class CervisagError(Exception):
    """Base class of every error the runtime raises on purpose."""


class InputError(CervisagError, ValueError):
    """An input file or array cannot be measured (pydicom style: file, tag, value found, value expected)."""


class ModelError(CervisagError):
    """A model or engine cannot be loaded: missing, tampered, or mismatched with its manifest."""


class BackendUnavailableError(CervisagError):
    """A requested backend or precision is not installed or not usable on this machine."""


class BackendStateError(CervisagError, RuntimeError):
    """A backend was used outside its lifecycle, e.g. ``infer`` before ``activate``."""
