"""The node's durable spool. Every write is atomic (temporary file, fsync, rename, fsync of the
directory), so a crash at any moment leaves either the old or the new file, never a torn one.

Layout under the spool root (``<key>`` is the source SOP Instance UID)::

    incoming/<key>.dcm        received, not yet finished (the C-STORE success follows its fsync)
    results/<key>/<kind>.dcm  result objects written for it (sr, gsps, sc)
    journal/<key>.json        what is known: result UIDs, which destination has which result
    done/<key>.json           finished: delivered everywhere (incoming and results removed)
    skipped/<key>.json        acknowledged, not measured (not a lateral C-spine), with the reason
    deadletter/<key>.dcm      given up, with deadletter/<key>.json holding the reason
    tmp/                      temporary files of atomic writes
    status.json               the health file (:mod:`.health`)
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

logger = logging.getLogger(__name__)

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
SUBDIRS = ("incoming", "results", "journal", "done", "skipped", "deadletter", "tmp")


def valid_uid(uid: str) -> bool:
    return 0 < len(uid) <= 64 and bool(_UID_RE.match(uid))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The spool directory ``root`` (created). Thread-safe: every file belongs to one key, and
    one key is worked on by one thread at a time (the node's scheduling guarantees it)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        for sub in SUBDIRS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for stale in (self.root / "tmp").iterdir():  # half-written files of a crash
            stale.unlink(missing_ok=True)

    # -- atomic writes --------------------------------------------------------------------
    def write_atomic(self, path: Path, data: bytes) -> Path:
        """Write ``data`` to ``path`` durably (the rename is the commit point)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix=path.name + ".")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return path

    def commit(self, tmp: Path, path: Path) -> Path:
        """fsync the finished file ``tmp`` (in this spool's filesystem) and rename it to ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        return path

    def commit_all(self, pairs: Sequence[tuple[Path, Path]]) -> None:
        """:meth:`commit` of several ``(tmp, path)`` files into one folder with one fsync of that
        folder: each file is fsync'd, then all are renamed, then the folder is fsync'd."""
        if not pairs:
            return
        folders = {path.parent for _, path in pairs}
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        for tmp, _ in pairs:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        for tmp, path in pairs:
            os.replace(tmp, path)
        for folder in folders:
            _fsync_dir(folder)

    def write_json(self, path: Path, obj: Any) -> Path:
        return self.write_atomic(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())

    # -- paths ----------------------------------------------------------------------------
    def incoming(self, key: str) -> Path:
        return self.root / "incoming" / f"{key}.dcm"

    def result(self, key: str, kind: str) -> Path:
        return self.root / "results" / key / f"{kind}.dcm"

    def journal_path(self, key: str) -> Path:
        return self.root / "journal" / f"{key}.json"

    # -- life cycle -----------------------------------------------------------------------
    def store_incoming(self, key: str, data: bytes) -> Path:
        """Spool a received instance (a DICOM file with meta); returns its path. The same
        instance received again replaces the earlier copy and restarts its work."""
        path = self.write_atomic(self.incoming(key), data)
        return path

    def pending(self) -> list[str]:
        """Keys of unfinished instances, oldest first (what a restart resumes)."""
        files = sorted((self.root / "incoming").glob("*.dcm"), key=lambda p: (p.stat().st_mtime, p.name))
        return [p.stem for p in files]

    def journal(self, key: str) -> dict[str, Any]:
        path = self.journal_path(key)
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):  # written atomically, so this means outside damage
            logger.warning("%s: unreadable journal, the instance is redone", path)
            return {}

    def save_journal(self, key: str, journal: dict[str, Any]) -> None:
        self.write_json(self.journal_path(key), journal)

    def finish(self, key: str, record: dict[str, Any], folder: str = "done") -> None:
        """Record ``key`` as finished in ``folder`` (done / skipped), then drop its work files."""
        self.write_json(self.root / folder / f"{key}.json", {**record, "finished_at": time.time()})
        self._drop(key)

    def dead_letter(self, key: str, reason: str, record: dict[str, Any] | None = None) -> Path:
        """Move the received instance to ``deadletter/`` with ``reason``; returns the reason file."""
        src = self.incoming(key)
        dst = self.root / "deadletter" / f"{key}.dcm"
        if src.is_file():
            os.replace(src, dst)
            _fsync_dir(dst.parent)
        info = self.write_json(self.root / "deadletter" / f"{key}.json",
                               {**(record or {}), "sop_instance_uid": key, "reason": reason, "at": time.time()})
        self._drop(key)
        return info

    def _drop(self, key: str) -> None:
        self.incoming(key).unlink(missing_ok=True)
        shutil.rmtree(self.root / "results" / key, ignore_errors=True)
        self.journal_path(key).unlink(missing_ok=True)
        _fsync_dir(self.root / "incoming")

    def counts(self) -> dict[str, int]:
        """Files per state: incoming, done, skipped, deadletter."""
        return {
            "incoming": sum(1 for _ in (self.root / "incoming").glob("*.dcm")),
            "done": sum(1 for _ in (self.root / "done").glob("*.json")),
            "skipped": sum(1 for _ in (self.root / "skipped").glob("*.json")),
            "deadletter": sum(1 for _ in (self.root / "deadletter").glob("*.json")),
        }
