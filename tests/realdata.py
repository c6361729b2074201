"""Where the pydicom-data package keeps the real CR radiographs (shared by the real-data tests)."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def pydicom_data_dir() -> Path | None:
    """The folder holding RG1_UNCR.dcm etc., or None when pydicom-data is not installed.

    Looked up through the installed package ``data_store``; never ``get_testdata_file``, which
    may try to download.
    """
    spec = importlib.util.find_spec("data_store")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "data"
    return folder if (folder / "RG1_UNCR.dcm").is_file() else None
