"""C-STORE SCU: sending result objects to a destination, and the retry schedule.

One association per delivery attempt carries every pending result of one study; the node keeps
it open for ``keep_association_s`` afterwards (:class:`AssociationCache`), so the next study to
the same destination reuses it. A result counts as delivered when the destination answers
success (0x0000) or a warning (0xB000-0xB007); anything else (refused association, network
error, failure status) makes the attempt fail and it is retried after :func:`backoff_s`.
"""
from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .config import Destination, NodeConfig

logger = logging.getLogger(__name__)

RESULT_SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
)
_SYNTAX = "1.2.840.10008.1.2.1"  # results are written explicit VR little endian


class DeliveryError(Exception):
    """An attempt failed; ``str(exc)`` is the one-line reason."""


def backoff_s(attempt: int, initial_s: float, max_s: float) -> float:
    """Delay before retry ``attempt`` (1-based): ``initial_s · 2^(attempt−1)``, capped at ``max_s``."""
    return min(max_s, initial_s * (2.0 ** max(0, attempt - 1)))


def client_ssl_context(config: "NodeConfig") -> ssl.SSLContext | None:
    """The TLS context for destinations marked ``tls = true`` (verifies against ``tls.ca``)."""
    if config.tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(config.tls.ca) if config.tls.ca else None)
    ctx.load_cert_chain(str(config.tls.cert), str(config.tls.key))
    return ctx


def _no_delay(assoc: object) -> None:
    """Send each PDU at once (TCP_NODELAY): with Nagle's algorithm the last small PDU of a C-STORE
    waits for the peer's delayed ACK (~40 ms per object on loopback)."""
    sock = getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:  # not a TCP socket: keep the default
        logger.debug("TCP_NODELAY not set: %s", exc)


def _open_association(config: "NodeConfig", dest: "Destination") -> Any:
    from pynetdicom import AE

    ae = AE(ae_title=config.ae_title)
    for sop in RESULT_SOP_CLASSES:
        ae.add_requested_context(sop, _SYNTAX)
    ae.acse_timeout = config.acse_timeout_s
    ae.dimse_timeout = config.dimse_timeout_s
    ae.network_timeout = config.network_timeout_s
    kwargs = {}
    if dest.tls:
        ctx = client_ssl_context(config)
        if ctx is None:
            raise DeliveryError(f"{dest.label}: tls = true but the node has no [tls] configuration")
        kwargs["tls_args"] = (ctx, dest.host)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, **kwargs)
    if not assoc.is_established:
        raise DeliveryError(f"{dest.label}: association {'rejected' if assoc.is_rejected else 'failed'}")
    _no_delay(assoc)
    return assoc


class AssociationCache:
    """The node's result associations, at most one per destination, kept open for ``keep_s``
    seconds after their last C-STORE so that the next study reuses it (Orthanc's
    ``DicomAssociationCloseDelay`` does the same). ``keep_s`` 0: one association per delivery.

    Thread-safe, shared by the sender threads: :meth:`get` holds the destination until
    :meth:`done`, so deliveries to one destination run one at a time over one association. That
    never makes a PACS that serves one association at a time (dcmtk's ``storescp`` without
    ``--fork``) queue one sender behind another's idle association."""

    def __init__(self, config: "NodeConfig", keep_s: float | None = None) -> None:
        self.config = config
        self.keep_s = float(config.keep_association_s if keep_s is None else keep_s)
        self._open: dict[str, tuple[Any, float]] = {}
        self._busy: dict[str, threading.Lock] = {}
        self._meta = threading.Lock()

    def __len__(self) -> int:
        """Associations held open, idle."""
        return len(self._open)

    def _lock(self, label: str) -> threading.Lock:
        with self._meta:
            return self._busy.setdefault(label, threading.Lock())

    def get(self, dest: "Destination") -> tuple[Any, bool, float]:
        """An established association to ``dest``, whether it was reused and the seconds spent
        waiting for another sender to free the destination; it is held until :meth:`done`."""
        lock = self._lock(dest.label)
        t0 = time.perf_counter()
        lock.acquire()
        waited_s = time.perf_counter() - t0
        try:
            held = self._open.pop(dest.label, None)
            if held is not None:
                assoc, last = held
                if assoc.is_established and time.monotonic() - last <= self.keep_s:
                    return assoc, True, waited_s
                _close(assoc)
            return _open_association(self.config, dest), False, waited_s
        except BaseException:
            lock.release()
            raise

    def done(self, dest: "Destination", assoc: Any, ok: bool, abort: bool = False) -> None:
        """Hand ``assoc`` back after a delivery: kept when it succeeded and ``keep_s`` > 0, else
        released (aborted with ``abort``: the peer stopped answering). Frees the destination."""
        try:
            if ok and self.keep_s > 0 and assoc.is_established:
                self._open[dest.label] = (assoc, time.monotonic())
            else:
                _close(assoc, abort=abort)
        finally:
            self._lock(dest.label).release()

    def close_idle(self) -> None:
        """Release the associations idle longer than ``keep_s`` (or closed by the peer)."""
        now = time.monotonic()
        for label in list(self._open):
            lock = self._lock(label)
            if not lock.acquire(blocking=False):
                continue  # in use
            try:
                held = self._open.get(label)
                if held is not None and (now - held[1] > self.keep_s or not held[0].is_established):
                    del self._open[label]
                    _close(held[0])
            finally:
                lock.release()

    def close_all(self) -> None:
        for label in list(self._open):
            held = self._open.pop(label, None)
            if held is not None:
                _close(held[0])


def _close(assoc: Any, abort: bool = False) -> None:
    if assoc.is_established:
        assoc.abort() if abort else assoc.release()


def send_files(config: "NodeConfig", dest: "Destination", files: Sequence[Path],
               on_sent: Callable[[Path], None], cache: AssociationCache | None = None) -> float:
    """C-STORE each of ``files`` to ``dest`` over one association (``cache``'s open one when it
    holds one, else a new one); ``on_sent(path)`` after each success. Returns the seconds spent
    sending, opening the association included, waiting for another sender to free the destination
    not. Raises :class:`DeliveryError` at the first failure. A reused association that fails
    before its first response (the peer closed it while idle) is replaced by a new one once."""
    cache = cache if cache is not None else AssociationCache(config, keep_s=0.0)
    t0 = time.perf_counter()
    assoc, reused, waited_s = cache.get(dest)
    ok, lost = False, True
    try:
        for i, path in enumerate(files):
            status = assoc.send_c_store(Path(path))  # streamed from the file, not decoded again
            code = getattr(status, "Status", None)
            if code is None and reused and i == 0:
                logger.debug("%s: reused association lost, opening a new one", dest.label)
                _close(assoc, abort=True)
                assoc, reused = _open_association(config, dest), False
                status = assoc.send_c_store(Path(path))
                code = getattr(status, "Status", None)
            if code is None:
                raise DeliveryError(f"{dest.label}: no C-STORE response for {path.name} (connection lost or timeout)")
            if code != 0x0000 and not 0xB000 <= code <= 0xB007:
                lost = False  # the peer answered: release politely
                raise DeliveryError(f"{dest.label}: C-STORE of {path.name} answered status 0x{code:04X}")
            on_sent(path)
        ok = True
    finally:
        cache.done(dest, assoc, ok, abort=lost and not ok)
    return time.perf_counter() - t0 - waited_s
