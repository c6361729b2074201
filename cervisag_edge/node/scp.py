"""The Storage SCP side: presentation contexts, association policy, C-ECHO and C-STORE handlers.

C-STORE status codes returned (PS3.4 B.2.3, PS3.7 C.4.2):

- ``0x0000`` success: the instance is in the spool, fsync'd (:meth:`.spool.Spool.store_incoming`);
- ``0xA700`` out of resources: the instance is larger than ``max_instance_bytes``, or the spool
  cannot be written (disk full, I/O error);
- ``0xA900`` data set does not match the SOP class: its SOP Class UID differs from the
  presentation context's, or its SOP Instance UID differs from the request's;
- ``0xC000`` cannot understand: no valid SOP Instance UID, or the data set cannot be parsed;
- ``0xC211`` the node is draining (SIGTERM) and takes no new work.

Pixel data is not decoded here (a deflate or pixel bomb costs the SCP nothing); the worker reads
it under :class:`~cervisag_edge.io.ReadLimits` and dead-letters what fails.
"""
from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any, Callable

from .logs import log_event
from .spool import valid_uid

if TYPE_CHECKING:  # pragma: no cover
    from .config import NodeConfig
    from .spool import Spool

logger = logging.getLogger(__name__)

#: Storage SOP classes accepted: DX For Presentation / For Processing, CR, Secondary Capture.
STORAGE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}
VERIFICATION = "1.2.840.10008.1.1"
#: Uncompressed transfer syntaxes (always read).
NATIVE_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still read)
)
#: Compressed transfer syntaxes offered when pydicom has a decoder for them installed.
COMPRESSED_CANDIDATES: tuple[str, ...] = (
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",  # JPEG Baseline / Extended
    "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",  # JPEG Lossless
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",  # JPEG-LS
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE Lossless
)
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_SOP_CLASS_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_DRAINING = 0xC211


def readable_syntaxes() -> tuple[str, ...]:
    """The transfer syntaxes accepted: native ones plus the compressed ones pydicom can decode here."""
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    out = list(NATIVE_SYNTAXES)
    for ts in COMPRESSED_CANDIDATES:
        try:
            if get_decoder(UID(ts)).is_available:
                out.append(ts)
        except (NotImplementedError, ValueError):
            continue
    return tuple(out)


def build_ae(config: "NodeConfig"):
    """A pynetdicom AE with the node's contexts, timeouts and calling-AE allow-list."""
    from pynetdicom import AE

    ae = AE(ae_title=config.ae_title)
    syntaxes = list(readable_syntaxes())
    for sop in STORAGE_SOP_CLASSES:
        ae.add_supported_context(sop, syntaxes)
    ae.add_supported_context(VERIFICATION, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    if config.allow:
        ae.require_calling_aet = list(config.allow)  # others: A-ASSOCIATE-RJ, calling AE not recognised
    ae.acse_timeout = config.acse_timeout_s
    ae.dimse_timeout = config.dimse_timeout_s
    ae.network_timeout = config.network_timeout_s
    ae.maximum_associations = config.max_associations
    return ae


def _peer(event: Any) -> dict[str, Any]:
    req = event.assoc.requestor
    primitive = getattr(req, "primitive", None)
    calling = getattr(primitive, "calling_ae_title", None) or req.ae_title
    return {"calling_ae": str(calling).strip(), "peer": f"{req.address}:{req.port}"}


class StoreHandlers:
    """The event handlers bound to the SCP. ``on_stored(key)`` is called after each success."""

    def __init__(self, config: "NodeConfig", spool: "Spool", on_stored: Callable[[str], None],
                 draining: Callable[[], bool]) -> None:
        self.config = config
        self.spool = spool
        self.on_stored = on_stored
        self.draining = draining

    def handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        from pynetdicom import evt

        return [(evt.EVT_C_STORE, self.on_c_store), (evt.EVT_C_ECHO, self.on_c_echo),
                (evt.EVT_REQUESTED, self.on_requested), (evt.EVT_ACCEPTED, self.on_accepted),
                (evt.EVT_RELEASED, self.on_closed), (evt.EVT_ABORTED, self.on_closed)]

    # -- association lines ------------------------------------------------------------------
    def on_requested(self, event: Any) -> None:
        p = _peer(event)
        allowed = not self.config.allow or p["calling_ae"] in self.config.allow
        if not allowed:
            log_event(logger, "association", outcome="rejected", reason="calling AE title not allowed", **p)

    def on_accepted(self, event: Any) -> None:
        log_event(logger, "association", outcome="accepted", **_peer(event))

    def on_closed(self, event: Any) -> None:
        log_event(logger, "association", outcome="released" if event.event.name == "EVT_RELEASED" else "aborted", **_peer(event))

    # -- DIMSE ------------------------------------------------------------------------------
    def on_c_echo(self, event: Any) -> int:
        return STATUS_SUCCESS

    def on_c_store(self, event: Any) -> int:
        req = event.request
        sop_class = str(req.AffectedSOPClassUID or "")
        sop = str(req.AffectedSOPInstanceUID or "").strip()
        fields = {**_peer(event), "sop_instance_uid": sop}
        if self.draining():
            log_event(logger, "c-store", status="0xC211", reason="node is draining", **fields)
            return STATUS_DRAINING
        if not valid_uid(sop):
            log_event(logger, "c-store", status="0xC000", reason="invalid Affected SOP Instance UID", **fields)
            return STATUS_CANNOT_UNDERSTAND
        data = event.encoded_dataset(include_meta=True)
        if len(data) > self.config.max_instance_bytes:
            log_event(logger, "c-store", status="0xA700", reason=f"{len(data)} bytes exceed {self.config.max_instance_bytes}", **fields)
            return STATUS_OUT_OF_RESOURCES
        problem = self._header_problem(data, sop_class, sop, str(event.context.transfer_syntax))
        if problem is not None:
            status, reason = problem
            log_event(logger, "c-store", status=f"0x{status:04X}", reason=reason, **fields)
            return status
        try:
            self.spool.store_incoming(sop, data)
        except OSError as exc:
            log_event(logger, "c-store", status="0xA700", reason=f"spool write failed: {exc}", **fields)
            return STATUS_OUT_OF_RESOURCES
        log_event(logger, "c-store", status="0x0000", bytes=len(data), **fields)
        self.on_stored(sop)
        return STATUS_SUCCESS

    @staticmethod
    def _header_problem(data: bytes, sop_class: str, sop: str, ts: str) -> tuple[int, str] | None:
        """Header checks without decoding pixels. A deflated data set is checked by the worker
        (inflating it here would expose the SCP to a deflate bomb)."""
        if ts == "1.2.840.10008.1.2.1.99":
            return None
        import pydicom

        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
            found_class, found_sop = str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))
        except Exception as exc:  # noqa: BLE001 - any parse failure is "cannot understand"
            return STATUS_CANNOT_UNDERSTAND, f"data set cannot be parsed: {type(exc).__name__}: {exc}"
        if found_class != sop_class:
            return STATUS_SOP_CLASS_MISMATCH, f"(0008,0016) SOP Class UID {found_class!r} found, {sop_class!r} expected"
        if found_sop != sop:
            return STATUS_SOP_CLASS_MISMATCH, f"(0008,0018) SOP Instance UID {found_sop!r} found, {sop!r} expected"
        return None
