"""Node configuration: one TOML file, overridden by command-line options (see ``docs/node.md``).

Example::

    ae_title = "CERVISAG"
    port = 11112
    spool = "/var/spool/cervisag"
    allow = ["MODALITY1", "ROUTER"]      # calling AE titles accepted; empty = any
    outputs = ["sr", "gsps", "sc"]
    workers = 2

    [[destination]]
    ae_title = "PACS"
    host = "10.0.0.5"
    port = 104

    [timeouts]                            # seconds
    acse = 30
    dimse = 60
    network = 60                          # also the idle limit of an association
    keep_association = 5                  # keep a result association open this long for the next
                                          # study (0: a new association per delivery)

    [retry]
    initial_s = 2.0
    max_s = 300.0
    give_up_after_s = 86400.0             # then the study goes to the dead-letter folder

    [limits]
    max_instance_mib = 512

    [tls]                                 # optional
    cert = "node.pem"
    key = "node.key"
    ca = "ca.pem"                         # verify peers against it
    require_client_cert = true
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import InputError

OUTPUT_KINDS: tuple[str, ...] = ("sr", "gsps", "sc")
_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE: 16 chars, no backslash / control chars


def check_ae_title(value: str, where: str) -> str:
    """``value`` stripped, if it is a valid AE title; else an InputError naming ``where``."""
    text = str(value).strip()
    if not text or not _AE_RE.match(text):
        raise InputError(f"{where}: AE title {value!r} invalid, expected 1-16 printable characters without backslash")
    return text


@dataclass(frozen=True)
class Destination:
    """A C-STORE SCP that receives the results."""

    ae_title: str
    host: str
    port: int
    tls: bool = False

    @property
    def label(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> "Destination":
        """``AE@HOST:PORT`` (HOST may be ``[v6addr]``)."""
        m = re.match(r"^([^@]+)@(\[[^\]]+\]|[^:]+):(\d+)$", text.strip())
        if not m:
            raise InputError(f"--destination {text!r} invalid, expected AE@HOST:PORT")
        return cls(check_ae_title(m.group(1), "--destination"), m.group(2).strip("[]"), _port(m.group(3), "--destination"))


@dataclass(frozen=True)
class TLSConfig:
    cert: Path
    key: Path
    ca: Path | None = None
    require_client_cert: bool = False


@dataclass(frozen=True)
class NodeConfig:
    """Everything the node needs. Durations in seconds."""

    spool: Path
    ae_title: str = "CERVISAG"
    host: str = "0.0.0.0"
    port: int = 11112
    allow: tuple[str, ...] = ()
    destinations: tuple[Destination, ...] = ()
    outputs: tuple[str, ...] = OUTPUT_KINDS
    workers: int = 1
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 60.0
    network_timeout_s: float = 60.0
    keep_association_s: float = 5.0
    retry_initial_s: float = 2.0
    retry_max_s: float = 300.0
    give_up_after_s: float = 86400.0
    max_instance_bytes: int = 512 * 1024 * 1024
    max_associations: int = 16
    drain_timeout_s: float = 120.0
    model: str | None = None
    tls: TLSConfig | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _port(value: Any, where: str) -> int:
    try:
        p = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: port {value!r} invalid, expected an integer 1-65535") from None
    if not 1 <= p <= 65535:
        raise InputError(f"{where}: port {p} invalid, expected 1-65535")
    return p


def parse_outputs(value: str | Sequence[str], where: str = "--outputs") -> tuple[str, ...]:
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value) if str(v).strip()]
    bad = [v for v in items if v not in OUTPUT_KINDS]
    if bad or not items:
        raise InputError(f"{where}: outputs {value!r} invalid, expected a comma list of {', '.join(OUTPUT_KINDS)}")
    return tuple(dict.fromkeys(items))


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the node configuration: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from None


def _positive(value: Any, where: str, allow_zero: bool = False) -> float:
    expected = "a number >= 0" if allow_zero else "a positive number"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {value!r} invalid, expected {expected}") from None
    if not (v >= 0 if allow_zero else v > 0):
        raise InputError(f"{where}: {v} invalid, expected {expected}")
    return v


def config_from_mapping(data: Mapping[str, Any], where: str = "config") -> NodeConfig:
    """A :class:`NodeConfig` from parsed TOML (keys as in the module docstring)."""
    known = {"ae_title", "host", "port", "spool", "allow", "destination", "outputs", "workers", "timeouts", "retry",
             "limits", "tls", "model", "max_associations", "drain_timeout_s"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}, expected some of {', '.join(sorted(known))}")
    if "spool" not in data:
        raise InputError(f"{where}: 'spool' is missing, expected the spool directory")
    kw: dict[str, Any] = {"spool": Path(str(data["spool"]))}
    if "ae_title" in data:
        kw["ae_title"] = check_ae_title(data["ae_title"], f"{where}: ae_title")
    if "host" in data:
        kw["host"] = str(data["host"])
    if "port" in data:
        kw["port"] = _port(data["port"], f"{where}: port")
    if "allow" in data:
        kw["allow"] = tuple(check_ae_title(a, f"{where}: allow") for a in data["allow"])
    if "outputs" in data:
        kw["outputs"] = parse_outputs(data["outputs"], f"{where}: outputs")
    if "workers" in data:
        kw["workers"] = int(_positive(data["workers"], f"{where}: workers"))
    if "model" in data:
        kw["model"] = str(data["model"])
    if "max_associations" in data:
        kw["max_associations"] = int(_positive(data["max_associations"], f"{where}: max_associations"))
    if "drain_timeout_s" in data:
        kw["drain_timeout_s"] = _positive(data["drain_timeout_s"], f"{where}: drain_timeout_s")
    dests = []
    for i, d in enumerate(data.get("destination", [])):
        w = f"{where}: destination[{i}]"
        if not isinstance(d, Mapping) or not {"ae_title", "host", "port"} <= set(d):
            raise InputError(f"{w}: expected a table with ae_title, host and port")
        dests.append(Destination(check_ae_title(d["ae_title"], w), str(d["host"]), _port(d["port"], w), bool(d.get("tls", False))))
    kw["destinations"] = tuple(dests)
    for table, mapping in (("timeouts", {"acse": "acse_timeout_s", "dimse": "dimse_timeout_s", "network": "network_timeout_s"}),
                           ("retry", {"initial_s": "retry_initial_s", "max_s": "retry_max_s", "give_up_after_s": "give_up_after_s"})):
        section = data.get(table, {})
        for key, value in section.items():
            if table == "timeouts" and key == "keep_association":
                kw["keep_association_s"] = _positive(value, f"{where}: [timeouts] keep_association", allow_zero=True)
                continue
            if key not in mapping:
                expected = [*mapping, "keep_association"] if table == "timeouts" else list(mapping)
                raise InputError(f"{where}: [{table}] {key} unknown, expected one of {', '.join(expected)}")
            kw[mapping[key]] = _positive(value, f"{where}: [{table}] {key}")
    limits = data.get("limits", {})
    if "max_instance_mib" in limits:
        kw["max_instance_bytes"] = int(_positive(limits["max_instance_mib"], f"{where}: [limits] max_instance_mib") * 1024 * 1024)
    if "tls" in data:
        t = data["tls"]
        if "cert" not in t or "key" not in t:
            raise InputError(f"{where}: [tls] needs cert and key")
        kw["tls"] = TLSConfig(Path(t["cert"]), Path(t["key"]), Path(t["ca"]) if t.get("ca") else None,
                              bool(t.get("require_client_cert", False)))
    return NodeConfig(**kw)


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> NodeConfig:
    """The configuration of ``path`` (TOML; None: defaults) with ``overrides`` applied.

    ``overrides`` keys: ``ae_title``, ``port``, ``spool``, ``allow`` (list), ``destinations``
    (list of ``AE@HOST:PORT``), ``outputs`` (comma string), ``workers``; None values are ignored.
    """
    o = {k: v for k, v in (overrides or {}).items() if v is not None and v != [] and v != ()}
    data: dict[str, Any] = _read_toml(Path(path)) if path is not None else {}
    where = str(path) if path is not None else "options"
    if "spool" in o:
        data["spool"] = str(o["spool"])
    if "spool" not in data:
        raise InputError(f"{where}: no spool directory, expected --spool DIR or 'spool' in the configuration")
    cfg = config_from_mapping(data, where)
    changes: dict[str, Any] = {}
    if "ae_title" in o:
        changes["ae_title"] = check_ae_title(o["ae_title"], "--ae-title")
    if "port" in o:
        changes["port"] = _port(o["port"], "--port")
    if "allow" in o:
        changes["allow"] = tuple(check_ae_title(a, "--allow") for a in o["allow"])
    if "destinations" in o:
        changes["destinations"] = tuple(Destination.parse(d) for d in o["destinations"])
    if "outputs" in o:
        changes["outputs"] = parse_outputs(o["outputs"])
    if "workers" in o:
        changes["workers"] = int(_positive(o["workers"], "--workers"))
    if "host" in o:
        changes["host"] = str(o["host"])
    return replace(cfg, **changes)
