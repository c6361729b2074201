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


def read_json_object(path: str | Path, what: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The JSON object in a file (chain prior, shape model, COCO annotations); ``error`` naming the
    file and ``what`` it should hold when it cannot be read or is not an object."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{p}: cannot read {what}: {exc}") from None
    if not isinstance(doc, dict):
        raise error(f"{p}: {what} must be a JSON object")
    return doc


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
    crop: Mapping[str, Any] = field(default_factory=dict)  # stage 2 only: {size, factor, alignment}
    levels: tuple[str, ...] = ()  # stage 2 only: the vertebrae it refines
    refine: "ModelManifest | None" = None  # the second stage (field ``refine``), None: one stage
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

    @property
    def stages(self) -> tuple["ModelManifest", ...]:
        """(first stage,) or (first stage, refinement stage)."""
        return (self,) if self.refine is None else (self, self.refine)

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        d["input_shape"] = list(self.input_shape)
        d["heatmap_shape"] = list(self.heatmap_shape)
        d["landmark_names"] = list(self.landmark_names)
        d["levels"] = list(self.levels)
        for key in ("crop", "levels"):  # stage-2 fields: absent from a first-stage manifest
            if not d[key]:
                d.pop(key)
        if self.refine is None:
            d.pop("refine")
        else:
            d["refine"] = self.refine.to_json_dict()
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
    for key in ("crop", "levels"):
        if key in raw:
            raise ModelError(f"{p}: field {key} belongs in the refine entry of a two-stage manifest, not at the top level")
    kwargs.pop("crop", None)
    kwargs.pop("levels", None)
    raw_refine = kwargs.pop("refine", None)
    refine = None if raw_refine is None else stage_manifest(raw_refine, p, kwargs.get("format", "onnx"))
    manifest = ModelManifest(**kwargs, refine=refine, path=str(p.parent))
    if verify_sha256:
        for stage, label in ((manifest, ""), (refine, "refine.")):
            if stage is not None:
                _check_sha256(stage, p, label)
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


def _check_sha256(stage: ModelManifest, source: Path, label: str) -> None:
    model = stage.model_path
    if not model.is_file():
        raise ModelError(f"{source}: model file {model} named by field '{label}file' does not exist")
    found = sha256_file(model)
    if found != stage.sha256:
        raise ModelError(
            f"{model}: sha256 {found[:16]}… does not match manifest field {label}sha256 {stage.sha256[:16]}… (tampered or mismatched file)"
        )


#: Fields the ``refine`` entry must carry (the rest default like a first-stage manifest's).
_STAGE_REQUIRED = ("file", "sha256", "input_shape", "heatmap_shape", "heatmap_stride", "crop", "codec")
#: What a stage-2 manifest resizes with (field ``refine.resize``).
CROP_RESIZE = "vertebra-crop"


def stage_manifest(raw: Any, source: str | Path, default_format: str = "onnx") -> ModelManifest:
    """The second stage (``refine`` entry of a manifest) as a :class:`ModelManifest` of its own.

    The entry holds the same fields as a first-stage manifest for its own model file (so every
    backend loads it the same way) plus ``crop`` {size, factor, alignment} and ``levels``; its
    ``landmark_names`` are the four corners (AS, PS, PI, AI). Raises :class:`ModelError` naming
    the field (``refine.<field>``), the value found and the value expected.
    """
    from ..core.landmarks import CORNERS, VERTEBRAE

    p = Path(source)

    def bad(name: str, found: Any, expected: str) -> ModelError:
        return ModelError(f"{p}: field refine.{name} {found!r}, expected {expected}")

    if not isinstance(raw, dict):
        raise bad("", type(raw).__name__, "a JSON object")
    missing = [k for k in _STAGE_REQUIRED if k not in raw]
    if missing:
        raise ModelError(f"{p}: field refine lacks field(s) {', '.join('refine.' + k for k in missing)}")
    try:
        shape = tuple(int(v) for v in raw["input_shape"])
        hm = tuple(int(v) for v in raw["heatmap_shape"])
        stride = int(raw["heatmap_stride"])
    except (TypeError, ValueError):
        raise bad("input_shape", raw["input_shape"], "(N, 1, S, S) integers with heatmap_shape (h, w) and an int heatmap_stride") from None
    crop = raw["crop"]
    if not isinstance(crop, dict) or not {"size", "factor"} <= set(crop):
        raise bad("crop", crop, "an object {size, factor, alignment}")
    size = crop["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise bad("crop.size", size, "an int >= 8")
    if not isinstance(crop["factor"], (int, float)) or isinstance(crop["factor"], bool) or not crop["factor"] > 0:
        raise bad("crop.factor", crop["factor"], "a number > 0")
    from .crop import ALIGNMENTS

    if crop.get("alignment", "endplates") not in ALIGNMENTS:
        raise bad("crop.alignment", crop.get("alignment"), " or ".join(repr(a) for a in ALIGNMENTS))
    if len(shape) != 4 or shape[1] != 1 or shape[2:] != (size, size):
        raise bad("input_shape", list(shape), f"[N, 1, {size}, {size}] (crop.size {size})")
    if len(hm) != 2 or stride < 1 or hm != (size // stride, size // stride):
        raise bad("heatmap_shape", list(hm), f"[{size // max(stride, 1)}, {size // max(stride, 1)}] (crop.size {size} / heatmap_stride {stride})")
    codec = raw["codec"]
    if not isinstance(codec, dict) or codec.get("type") != "udp-dark":
        raise bad("codec.type", codec.get("type") if isinstance(codec, dict) else codec, "'udp-dark'")
    if [int(v) for v in codec.get("input_size", ())] != [size, size]:
        raise bad("codec.input_size", codec.get("input_size"), f"[{size}, {size}]")
    if [int(v) for v in codec.get("heatmap_size", ())] != [hm[1], hm[0]]:
        raise bad("codec.heatmap_size", codec.get("heatmap_size"), f"[{hm[1]}, {hm[0]}]")
    names = tuple(raw.get("landmark_names", CORNERS))
    if names != CORNERS:
        raise bad("landmark_names", list(names), repr(list(CORNERS)))
    levels = tuple(raw.get("levels", VERTEBRAE))
    if not levels or any(v not in VERTEBRAE for v in levels):
        raise bad("levels", list(levels), f"a non-empty subset of {list(VERTEBRAE)}")
    resize = raw.get("resize", CROP_RESIZE)
    if resize != CROP_RESIZE:
        raise bad("resize", resize, repr(CROP_RESIZE))
    for name in ("refine", "stages"):
        if name in raw:
            raise bad(name, "present", "absent (a stage has no further stages)")
    return ModelManifest(
        name=str(raw.get("name", Path(str(raw["file"])).stem)), file=str(raw["file"]), sha256=str(raw["sha256"]),
        precision=str(raw.get("precision", "fp32")), input_name=str(raw.get("input_name", "crop")), input_shape=shape,  # type: ignore[arg-type]
        output_name=str(raw.get("output_name", "heatmaps")), heatmap_shape=hm, heatmap_stride=stride,  # type: ignore[arg-type]
        mean=float(raw.get("mean", 0.5)), std=float(raw.get("std", 0.25)), pad_value=float(raw.get("pad_value", 0.0)),
        resize=CROP_RESIZE, codec=dict(codec), landmark_names=CORNERS, format=str(raw.get("format", default_format)),
        training=dict(raw.get("training", {})), metrics=dict(raw.get("metrics", {})), extra=dict(raw.get("extra", {})),
        crop=dict(crop), levels=levels, path=str(p.parent),
    )


def engines_dir() -> Path:
    """Directory of the shipped models: ``engines/`` of a source checkout, else the packaged copy."""
    here = Path(__file__).resolve().parents[1]  # the package root (this module lives in engine/)
    for cand in (here.parent / "engines", here / "engines"):
        if cand.is_dir():
            return cand
    return here.parent / "engines"


DEFAULT_MODEL = "cervisag_unet"
