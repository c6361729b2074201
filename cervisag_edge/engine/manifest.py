"""Model manifests: the runtime trusts these, not hard-coded constants.

A manifest is a JSON file next to its model (``engines/cervisag_<name>.json``).
Loading verifies the model file's sha256 before anything is deserialised.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import ModelError
from ..core.landmarks import LANDMARK_NAMES, SCHEMA_VERSION

MANIFEST_SCHEMA_VERSION = "1"


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk_bytes)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelManifest:
    """What the runtime needs to know about one model file.

    ``input_shape`` is (N, C, H, W) with N = -1 for a dynamic batch.
    Normalisation: ``x = (pixel01 - mean) / std`` where pixel01 is the display image in [0, 1].
    """

    name: str
    file: str
    sha256: str
    precision: str
    input_name: str
    input_shape: tuple[int, int, int, int]
    output_name: str
    heatmap_shape: tuple[int, int]  # (h, w)
    heatmap_stride: int
    mean: float
    std: float
    pad_value: float
    resize: str  # "letterbox"
    codec: Mapping[str, Any]
    landmark_names: tuple[str, ...] = LANDMARK_NAMES
    schema_version: str = SCHEMA_VERSION
    manifest_version: str = MANIFEST_SCHEMA_VERSION
    format: str = "onnx"
    base_model: str | None = None
    training: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    path: str = ""  # directory of the manifest, filled at load time, not serialised

    @property
    def input_hw(self) -> tuple[int, int]:
        return int(self.input_shape[2]), int(self.input_shape[3])

    @property
    def model_path(self) -> Path:
        return Path(self.path) / self.file

    @property
    def model_id(self) -> str:
        return f"{self.name}:{self.precision}"

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        d["input_shape"] = list(self.input_shape)
        d["heatmap_shape"] = list(self.heatmap_shape)
        d["landmark_names"] = list(self.landmark_names)
        return d

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json_dict(), indent=2, sort_keys=False) + "\n")


_REQUIRED = (
    "name", "file", "sha256", "precision", "input_name", "input_shape", "output_name",
    "heatmap_shape", "heatmap_stride", "mean", "std", "pad_value", "resize", "codec",
)


def load_manifest(path: str | Path, *, verify_sha256: bool = True) -> ModelManifest:
    """Read and validate a manifest; with ``verify_sha256`` the model file must match it.

    Raises :class:`ModelError` naming the manifest, the field, the value found and the value expected.
    """
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except FileNotFoundError:
        raise ModelError(f"{p}: manifest not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{p}: manifest is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{p}: manifest must be a JSON object, got {type(raw).__name__}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise ModelError(f"{p}: manifest lacks field(s) {', '.join(missing)}")
    names = tuple(raw.get("landmark_names", LANDMARK_NAMES))
    if names != LANDMARK_NAMES:
        raise ModelError(f"{p}: field landmark_names does not match schema {SCHEMA_VERSION} (found {len(names)} names)")
    known = set(ModelManifest.__dataclass_fields__) - {"path"}
    kwargs = {k: v for k, v in raw.items() if k in known}
    kwargs["extra"] = {**raw.get("extra", {}), **{k: v for k, v in raw.items() if k not in known}}
    kwargs["input_shape"] = tuple(int(v) for v in raw["input_shape"])
    kwargs["heatmap_shape"] = tuple(int(v) for v in raw["heatmap_shape"])
    kwargs["landmark_names"] = names
    if len(kwargs["input_shape"]) != 4 or kwargs["input_shape"][1] != 1:
        raise ModelError(f"{p}: field input_shape {list(kwargs['input_shape'])} is not (N, 1, H, W)")
    manifest = ModelManifest(**kwargs, path=str(p.parent))
    if verify_sha256:
        model = manifest.model_path
        if not model.is_file():
            raise ModelError(f"{p}: model file {model} named by field 'file' does not exist")
        found = sha256_file(model)
        if found != manifest.sha256:
            raise ModelError(
                f"{model}: sha256 {found[:16]}… does not match manifest field sha256 {manifest.sha256[:16]}… (tampered or mismatched file)"
            )
    return manifest


def site_model_warning(manifest: ModelManifest) -> str | None:
    """One line when ``manifest`` is a site model (``extra.site``, written by ``cervisag adapt``)
    whose gate did not pass for this model file; None for shipped models and verified site models.

    Verified means ``extra.verification.passed`` is true and the verification names this file's
    sha256, or (a precision variant) the FP32 file it was made from (``base_model``)."""
    if not manifest.extra.get("site"):
        return None
    ver = manifest.extra.get("verification") or {}
    same = ver.get("model_sha256") == manifest.sha256 or (manifest.base_model is not None and ver.get("model_file") == manifest.base_model)
    if ver.get("passed") is True and same:
        return None
    why = ("its verification is of another model file" if ver.get("passed") is True else
           str(ver.get("reason") or "no verification recorded"))
    return (f"{Path(manifest.path) / manifest.file}: site model {manifest.name!r} is not verified ({why}); "
            "run 'cervisag adapt' with labelled held-out studies before clinical-research use")


def engines_dir() -> Path:
    """Directory of the shipped models: ``engines/`` of a source checkout, else the packaged copy."""
    here = Path(__file__).resolve().parents[1]  # the package root (this module lives in engine/)
    for cand in (here.parent / "engines", here / "engines"):
        if cand.is_dir():
            return cand
    return here.parent / "engines"


DEFAULT_MODEL = "cervisag_unet"
