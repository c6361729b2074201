"""C-STORE SCU: sending result objects to a destination, and the retry schedule.

One association per delivery attempt carries every pending result of one study. A result counts
as delivered when the destination answers success (0x0000) or a warning (0xB000-0xB007);
anything else (refused association, network error, failure status) makes the attempt fail and it
is retried after :func:`backoff_s`.
"""
from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

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


def send_files(config: "NodeConfig", dest: "Destination", files: Sequence[Path],
               on_sent: Callable[[Path], None]) -> None:
    """C-STORE each of ``files`` to ``dest`` over one association; ``on_sent(path)`` after each
    success. Raises :class:`DeliveryError` at the first failure."""
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
    try:
        for path in files:
            status = assoc.send_c_store(Path(path))  # streamed from the file, not decoded again
            code = getattr(status, "Status", None)
            if code is None:
                raise DeliveryError(f"{dest.label}: no C-STORE response for {path.name} (connection lost or timeout)")
            if code != 0x0000 and not 0xB000 <= code <= 0xB007:
                raise DeliveryError(f"{dest.label}: C-STORE of {path.name} answered status 0x{code:04X}")
            on_sent(path)
    finally:
        if assoc.is_established:
            assoc.release()
