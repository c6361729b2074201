"""The node: SCP → spool → workers (measure, write) → senders (C-STORE SCU, retries) → done.

Guarantees (see ``docs/node.md``):

- an instance is acknowledged only once it is fsync'd in the spool;
- a restart resumes every unfinished instance from the spool (measuring again only when its
  results were not all written; re-sending only what the journal does not mark delivered);
- result UIDs are derived from the source SOP Instance UID, so a re-send after a crash replaces
  the same instance at the destination instead of adding a duplicate;
- one bad instance goes to ``deadletter/`` with its reason; the node keeps serving.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

from .health import STATUS_FILE
from .logs import log_event
from .scp import StoreHandlers, build_ae
from .sender import AssociationCache, DeliveryError, backoff_s, send_files
from .spool import Spool
from .worker import NotMeasured, process

if TYPE_CHECKING:  # pragma: no cover
    from ..core.measurer import Measurer
    from .config import Destination, NodeConfig

logger = logging.getLogger("cervisag_edge.node")

#: Order results are sent in: the SC first (the SR may reference it), the SR last.
SEND_ORDER = ("sc", "gsps", "sr")
_COUNTERS = ("received", "processed", "skipped", "failed", "delivery_failures")


def server_ssl_context(config: "NodeConfig") -> ssl.SSLContext | None:
    """The TLS context of the SCP, or None without ``[tls]``."""
    if config.tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(config.tls.ca) if config.tls.ca else None)
    ctx.load_cert_chain(str(config.tls.cert), str(config.tls.key))
    ctx.verify_mode = ssl.CERT_REQUIRED if config.tls.require_client_cert else ssl.CERT_OPTIONAL if config.tls.ca else ssl.CERT_NONE
    return ctx


class Node:
    """One running node. ``measurer``: a loaded :class:`~cervisag_edge.Measurer` (default: the
    configured model on ONNX Runtime)."""

    def __init__(self, config: "NodeConfig", measurer: "Measurer | None" = None) -> None:
        self.config = config
        self.spool = Spool(config.spool)
        self.measurer = measurer
        self.state = "starting"
        self.counters = dict.fromkeys(_COUNTERS, 0)
        self.totals_ms = {"measure_ms": 0.0, "write_ms": 0.0, "send_ms": 0.0}
        self._work: queue.Queue[str | None] = queue.Queue()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._redo: set[str] = set()
        self._lock = threading.RLock()
        self._deliveries: list[tuple[float, int, str, str]] = []
        self._delivering = 0
        self._seq = itertools.count()
        self._cv = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Any = None
        self._dest = {d.label: d for d in config.destinations}
        self._associations = AssociationCache(config)  # result associations kept for the next study
        self.started_at = time.time()

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> "Node":
        # import everything the threads use before starting them (concurrent first imports of
        # pydicom modules from several threads can see partially initialised modules)
        import pynetdicom  # noqa: F401

        from ..outputs import dicom_out, gsps, overlay, sr, sr_encoding  # noqa: F401

        if self.measurer is None:
            from ..core.measurer import Measurer

            self.measurer = Measurer(self.config.model)
        if not self.config.destinations:
            logger.warning("no destination configured: results stay in %s", self.spool.root / "results")
        resumed = self.spool.pending()
        for key in resumed:
            self._enqueue(key)
        if resumed:
            log_event(logger, "resume", pending=len(resumed))
        for i in range(self.config.workers):
            self._spawn(self._work_loop, f"cervisag-worker-{i}")
        for i in range(max(1, self.config.workers)):
            self._spawn(self._send_loop, f"cervisag-sender-{i}")
        self._spawn(self._status_loop, "cervisag-status")
        handlers = StoreHandlers(self.config, self.spool, self._on_stored, lambda: self.state == "draining")
        ae = build_ae(self.config)
        self._server = ae.start_server((self.config.host, self.config.port), block=False,
                                       evt_handlers=handlers.handlers(), ssl_context=server_ssl_context(self.config))
        self.state = "serving"
        log_event(logger, "serving", ae_title=self.config.ae_title, port=self.config.port, workers=self.config.workers,
                  allow=list(self.config.allow), destinations=list(self._dest), outputs=list(self.config.outputs),
                  tls=self.config.tls is not None)
        self.write_status()
        return self

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, drain: bool = True) -> None:
        """Stop accepting associations; with ``drain``, finish the received work (measuring and
        in-flight deliveries, up to ``drain_timeout_s``); what is left stays in the spool."""
        with self._lock:
            self.state = "draining"
        self.write_status()
        if self._server is not None:
            self._server.shutdown()
        deadline = time.monotonic() + self.config.drain_timeout_s
        while drain and time.monotonic() < deadline:
            with self._lock:
                due_now = any(due <= time.time() for due, *_ in self._deliveries)
                busy = bool(self._queued or self._active - self._waiting_keys()) or self._delivering or due_now
            if not busy:
                break
            time.sleep(0.05)
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        for _ in range(self.config.workers):
            self._work.put(None)
        for t in self._threads:
            t.join(timeout=5)
        self._associations.close_all()
        self.state = "stopped"
        self.write_status()
        log_event(logger, "stopped", **self.counters)

    def _waiting_keys(self) -> set[str]:
        return {key for _, _, key, _ in self._deliveries}

    # -- receiving ----------------------------------------------------------------------------
    def _on_stored(self, key: str) -> None:
        with self._lock:
            self.counters["received"] += 1
            if key in self._active:
                self._redo.add(key)  # received again while being worked on: redo it afterwards
                return
        self._enqueue(key)

    def _enqueue(self, key: str) -> None:
        with self._lock:
            if key in self._queued:
                return
            self._queued.add(key)
        self._work.put(key)

    # -- measuring ------------------------------------------------------------------------------
    def _work_loop(self) -> None:
        while not self._stop.is_set():
            key = self._work.get()
            if key is None:
                return
            with self._lock:
                self._queued.discard(key)
                self._active.add(key)
            try:
                self._work_one(key)
            except Exception as exc:  # noqa: BLE001 - one bad study never stops the node
                self._dead_letter(key, f"internal error: {type(exc).__name__}: {exc}")
                logger.exception("%s: internal error", key)

    def _work_one(self, key: str) -> None:
        from ..errors import CervisagError

        journal = self.spool.journal(key)
        results = journal.get("results") or {}
        if not results or not all(self.spool.result(key, k).is_file() for k in results):
            try:
                res = process(self.measurer, self.spool, key, self.config.outputs)
            except NotMeasured as exc:
                with self._lock:
                    self.counters["skipped"] += 1
                    self.spool.finish(key, {"sop_instance_uid": key, "reason": str(exc)}, folder="skipped")
                    self._after_finish(key)
                log_event(logger, "study", sop_instance_uid=key, outcome="skipped", reason=str(exc))
                return
            except (CervisagError, ValueError, OSError, MemoryError) as exc:
                self._dead_letter(key, str(exc))
                return
            journal = {"sop_instance_uid": key, "results": res.uids, "delivered": {}, "attempts": {},
                       "measure_ms": round(res.measure_ms, 2), "write_ms": round(res.write_ms, 2), "send_ms": 0.0,
                       "parameters": res.parameters}
            with self._lock:
                self.spool.save_journal(key, journal)
                self.totals_ms["measure_ms"] += res.measure_ms
                self.totals_ms["write_ms"] += res.write_ms
        self._schedule(key, journal)

    def _schedule(self, key: str, journal: dict[str, Any]) -> None:
        with self._lock:
            pending = [label for label in self._dest if self._undelivered(journal, label)]
            if not pending:
                self._finish(key, journal)
                return
            for label in pending:
                heapq.heappush(self._deliveries, (time.time(), next(self._seq), key, label))
            self._cv.notify_all()

    @staticmethod
    def _undelivered(journal: dict[str, Any], label: str) -> list[str]:
        done = set(journal.get("delivered", {}).get(label, []))
        return [k for k in SEND_ORDER if k in journal.get("results", {}) and k not in done]

    def _finish(self, key: str, journal: dict[str, Any]) -> None:
        """Called with the lock held, once every destination has every result."""
        record = {k: journal.get(k) for k in ("sop_instance_uid", "results", "measure_ms", "write_ms", "send_ms", "parameters")}
        if self._dest:
            self.spool.finish(key, record)
        else:
            self.spool.write_json(self.spool.root / "done" / f"{key}.json", record)
            self.spool.incoming(key).unlink(missing_ok=True)
            self.spool.journal_path(key).unlink(missing_ok=True)
        self.counters["processed"] += 1
        log_event(logger, "study", outcome="delivered", destinations=list(self._dest),
                  **{k: v for k, v in record.items() if k != "parameters"})
        self._after_finish(key)

    def _after_finish(self, key: str) -> None:
        self._active.discard(key)
        if key in self._redo:
            self._redo.discard(key)
            self._enqueue(key)

    def _dead_letter(self, key: str, reason: str, **extra: Any) -> None:
        with self._lock:
            self.spool.dead_letter(key, reason, extra)
            self.counters["failed"] += 1
            self._deliveries = [d for d in self._deliveries if d[2] != key]
            heapq.heapify(self._deliveries)
            self._redo.discard(key)
            self._active.discard(key)
        log_event(logger, "study", logging.WARNING, sop_instance_uid=key, outcome="dead-letter", reason=reason, **extra)

    # -- sending --------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._associations.close_idle()  # outside the lock: releasing is network I/O
            with self._cv:
                if not self._deliveries or self._deliveries[0][0] > time.time():
                    wait = self._deliveries[0][0] - time.time() if self._deliveries else 1.0
                    self._cv.wait(timeout=max(0.01, min(wait, 1.0)))
                    continue
                if self._stop.is_set():
                    return
                _, _, key, label = heapq.heappop(self._deliveries)
                self._delivering += 1
            try:
                self._deliver(key, self._dest[label])
            except Exception as exc:  # noqa: BLE001
                logger.exception("%s: delivery to %s crashed", key, label)
                self._dead_letter(key, f"internal error delivering to {label}: {type(exc).__name__}: {exc}")
            finally:
                with self._lock:
                    self._delivering -= 1

    def _deliver(self, key: str, dest: "Destination") -> None:
        journal = self.spool.journal(key)
        if not journal:
            return  # finished or dead-lettered meanwhile
        kinds = self._undelivered(journal, dest.label)
        files = [self.spool.result(key, k) for k in kinds]

        def on_sent(path: os.PathLike[str]) -> None:
            with self._lock:
                journal.setdefault("delivered", {}).setdefault(dest.label, []).append(os.path.basename(path)[:-4])
                self.spool.save_journal(key, journal)

        try:
            send_ms = send_files(self.config, dest, files, on_sent, self._associations) * 1000
        except (DeliveryError, OSError, RuntimeError, ValueError) as exc:
            self._retry(key, dest, journal, str(exc))
            return
        with self._lock:
            journal["send_ms"] = round(float(journal.get("send_ms", 0.0)) + send_ms, 2)
            self.totals_ms["send_ms"] += send_ms
            self.spool.save_journal(key, journal)
            if not any(self._undelivered(journal, label) for label in self._dest):
                self._finish(key, journal)

    def _retry(self, key: str, dest: "Destination", journal: dict[str, Any], reason: str) -> None:
        with self._lock:
            attempts = journal.setdefault("attempts", {})
            state = attempts.setdefault(dest.label, {"count": 0, "first_failure": time.time()})
            state["count"] += 1
            self.counters["delivery_failures"] += 1
            if time.time() - state["first_failure"] > self.config.give_up_after_s:
                give_up = True
            else:
                give_up = False
                self.spool.save_journal(key, journal)
                delay = backoff_s(state["count"], self.config.retry_initial_s, self.config.retry_max_s)
                heapq.heappush(self._deliveries, (time.time() + delay, next(self._seq), key, dest.label))
                self._cv.notify_all()
        if give_up:
            self._dead_letter(key, f"delivery to {dest.label} failed for {self.config.give_up_after_s:g} s: {reason}",
                              destination=dest.label)
        else:
            log_event(logger, "delivery-retry", logging.WARNING, sop_instance_uid=key, destination=dest.label,
                      attempt=state["count"], retry_in_s=round(delay, 2), reason=reason)

    # -- health ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"pid": os.getpid(), "state": self.state, "started_at": self.started_at, "updated_at": time.time(),
                    "ae_title": self.config.ae_title, "port": self.config.port,
                    "queue_depth": len(self._queued), "in_progress": len(self._active - self._waiting_keys()),
                    "pending_deliveries": len(self._waiting_keys()) + self._delivering,
                    **self.counters, **{k: round(v, 1) for k, v in self.totals_ms.items()}, "spool": self.spool.counts()}

    def write_status(self) -> None:
        try:
            self.spool.write_json(self.spool.root / STATUS_FILE, self.status())
        except OSError as exc:
            logger.warning("%s: cannot write the status file: %s", self.spool.root / STATUS_FILE, exc)

    def _status_loop(self) -> None:
        while not self._stop.wait(1.0):
            self.write_status()
