"""The Measurer: a loaded study → preprocess → infer → decode → parameters, one model loaded once.

>>> from cervisag_edge import Measurer
>>> m = Measurer()                       # shipped model, ONNX Runtime on the CPU
>>> result = m.measure("study.dcm")      # a path is read by cervisag_edge.io, once
>>> result.parameters.cobb_c2_c7_deg

The core takes a :class:`~cervisag_edge.io.LoadedImage` and reads no file; ``measure(path)`` is
the one-call convenience that hands the path to :func:`cervisag_edge.io.read_image` first. The
:class:`Measurement` keeps its study (``result.study``), so outputs take one object.
Many studies (serial, process pool with timeouts, Ray) go through :mod:`cervisag_edge.runner`.

Thread safety: a Measurer may be shared by several threads. Every stage is a pure function
of its inputs; the backend serialises calls itself when its engine is not thread-safe
(``Backend.thread_safe``); ONNX Runtime sessions are.
"""
from __future__ import annotations

import importlib
import logging
import os
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from ..engine.backends import get_backend_class
from ..engine.backends.base import Backend
from .chain import decode_chain
from .chain_prior import prior_for_manifest
from ..engine.codec import UDPHeatmapCodec
from ..engine.resolver import resolve
from ..errors import ModelError
from ..io import LoadedImage, ReadLimits, display_from_array, read_image
from .landmarks import LANDMARK_NAMES
from ..engine.manifest import ModelManifest, load_manifest, site_model_warning
from .measurement import Landmark, Measurement
from .parameters import coincident, facing_hint, parameters_from_px
from ..engine.preprocess import LetterboxTransform, letterbox, letterbox_geometry, normalize
from ..engine.refine import Refiner
from .uncertainty import UncertaintyCalibration, annotate
from .visibility import VisibilityRule, edge_distance_input_px

if TYPE_CHECKING:  # pragma: no cover
    from ..runner import StudyResult

logger = logging.getLogger(__name__)

STAGES = ("read_ms", "preprocess_ms", "inference_ms", "decode_ms", "parameters_ms", "total_ms")
DEFAULT_FACTORY = "cervisag_edge.core.measurer:Measurer"


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


@dataclass(frozen=True)
class Located:
    """One image's landmarks after both stages and the checks (:meth:`Measurer.locate`).

    ``landmarks_px`` (K, 2) original px; ``confidence`` (K,) stage-1 peaks; ``reported`` (K,) bool
    under the visibility rule; ``visible`` (K,) bool after the shape-consistency check and the
    coincident-pair rule; ``refined`` (K,) bool, the corners stage 2 moved (None without it);
    ``rejected`` the names the consistency check hid; ``facing_hint`` ±1 or None."""

    landmarks_px: np.ndarray
    confidence: np.ndarray
    reported: np.ndarray
    visible: np.ndarray
    refined: np.ndarray | None
    rejected: tuple[str, ...]
    facing_hint: float | None


@dataclass(frozen=True)
class MeasurerSpec:
    """A picklable description of a Measurer, built again in any process by :meth:`build`.

    ``factory`` is an importable ``"module:callable"`` (default :class:`Measurer`) or a
    module-level callable (it must pickle by reference for worker processes and Ray); it is
    called with ``model=, backend=, precision=, threads=`` and, when set, ``confidence_threshold=``,
    ``estimates=False``, ``refine=False`` and ``limits=`` (a :class:`ReadLimits` from ``max_pixels``/``max_bytes``)."""

    model: str | None = None
    backend: str = "onnxruntime"
    precision: str = "fp32"
    threads: int | None = None
    confidence_threshold: float | None = None
    max_pixels: int | None = None
    max_bytes: int | None = None
    estimates: bool = True
    refine: bool = True
    factory: Any = DEFAULT_FACTORY

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.precision}"

    def with_variant(self, backend: str | None = None, precision: str | None = None) -> "MeasurerSpec":
        return replace(self, backend=backend or self.backend, precision=precision or self.precision)

    def limits(self) -> ReadLimits | None:
        kw = {k: v for k, v in (("max_pixels", self.max_pixels), ("max_bytes", self.max_bytes)) if v}
        return ReadLimits(**kw) if kw else None

    def build(self) -> Any:
        factory = self.factory
        if isinstance(factory, str):
            module, _, attr = factory.partition(":")
            factory = getattr(importlib.import_module(module), attr)
        kwargs: dict[str, Any] = {"model": self.model, "backend": self.backend, "precision": self.precision, "threads": self.threads}
        if self.confidence_threshold is not None:
            kwargs["confidence_threshold"] = self.confidence_threshold
        if not self.estimates:
            kwargs["estimates"] = False
        if not self.refine:
            kwargs["refine"] = False
        limits = self.limits()
        if limits is not None:
            kwargs["limits"] = limits
        return factory(**kwargs)


class Measurer:
    """Loads one model on one backend, then measures studies.

    ``model``: None (the shipped model), a model name in ``engines/``, or a manifest/ONNX path.
    ``backend``: ``onnxruntime`` (default), ``tensorrt``, ``torch`` or ``auto``.
    ``precision``: ``fp32``, ``fp16`` or ``int8`` (the variant that suits the backend is chosen).
    ``confidence_threshold``: one threshold for every landmark, no edge guard (default: the
    manifest's calibrated rule, :mod:`cervisag_edge.core.visibility`).
    ``estimates``: report estimated hidden landmarks and the parameters that need them (flagged
    estimated); False gives None for those, as measured-only callers expect.
    ``refine``: run the manifest's second stage (``refine`` entry: vertebra corners refined on
    aligned crops of the full-resolution image, :mod:`cervisag_edge.engine.refine`) when it has
    one; False measures with the first stage alone. The stage runs on a second instance of the
    same backend class, built from the stage manifest.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, backend: str = "onnxruntime", precision: str = "fp32",
                 *, threads: int | None = None, confidence_threshold: float | None = None,
                 limits: ReadLimits | None = None, providers: Sequence[str] = ("cpu",), estimates: bool = True,
                 refine: bool = True) -> None:
        t0 = time.perf_counter()
        resolved = resolve(model, backend, precision)
        logger.info("backend %s: %s", resolved.backend, resolved.reason)
        if not resolved.manifest_path.is_file():
            raise ModelError(f"{resolved.manifest_path}: no {precision} model for backend {resolved.backend!r} (manifest not found)")
        self.manifest: ModelManifest = load_manifest(resolved.manifest_path)
        unverified = site_model_warning(self.manifest)
        if unverified:
            logger.warning(unverified)
        self.limits = limits or ReadLimits()
        self.spec = MeasurerSpec(model=None if model is None else str(model), backend=backend, precision=precision,
                                 threads=threads, confidence_threshold=confidence_threshold,
                                 max_pixels=self.limits.max_pixels, max_bytes=self.limits.max_bytes, estimates=bool(estimates),
                                 refine=bool(refine))
        options: dict[str, Any] = {"threads": threads}
        if resolved.backend == "onnxruntime":
            options["providers"] = tuple(providers)
        self.backend: Backend = get_backend_class(resolved.backend)(self.manifest, **options).activate()
        self.backend_name = resolved.backend
        self.refiner: Refiner | None = None
        if refine and self.manifest.refine is not None:
            stage = get_backend_class(resolved.backend)(self.manifest.refine, **options)
            try:
                self.refiner = Refiner(self.manifest.refine, stage.activate())
            except BaseException:
                self.backend.deactivate()
                raise
        self.precision = precision
        self.codec = UDPHeatmapCodec.from_manifest(self.manifest.codec)
        self.chain_prior = prior_for_manifest(self.manifest)  # None: every landmark decoded alone
        if confidence_threshold is not None:
            self.visibility = VisibilityRule.plain(confidence_threshold)  # ValueError names the value
        else:
            try:
                self.visibility = VisibilityRule.from_codec(self.manifest.codec)
            except ValueError as exc:
                raise ModelError(f"{resolved.manifest_path}: {exc}") from None
        self.confidence_threshold = self.visibility.threshold
        self.estimates = bool(estimates)
        self.uncertainty = UncertaintyCalibration.from_manifest(self.manifest)
        # the shape-consistency check belongs to the calibrated rule; a plain threshold has none
        try:
            self.consistency = None if confidence_threshold is not None else self.uncertainty.consistency_check()
        except ValueError as exc:
            raise ModelError(f"{resolved.manifest_path}: {exc}") from None
        self.load_ms = _ms(t0)
        logger.debug("loaded %s on %s in %.1f ms", self.manifest.model_id, self.backend_name, self.load_ms)

    # -- stages -------------------------------------------------------------------------
    def preprocess(self, display: np.ndarray) -> tuple[np.ndarray, LetterboxTransform]:
        """(H, W) display → ((1, 1, H_in, W_in) float32, transform)."""
        h, w = self.manifest.input_hw
        boxed, tf = letterbox(display, (w, h), self.manifest.pad_value)
        return normalize(boxed, self.manifest.mean, self.manifest.std)[None, None], tf

    def preprocess_image(self, img: LoadedImage) -> tuple[np.ndarray, LetterboxTransform]:
        """Resize first, convert after: the image area-resized straight from its stored values to
        the letterbox size (no full-resolution display is built), then padded and normalised.
        ((1, 1, H_in, W_in) float32, transform to the original pixels)."""
        h, w = self.manifest.input_hw
        size, tf = letterbox_geometry(img.size_px, (w, h))
        x, _ = self.preprocess(img.resized(size))
        return x, tf

    def resize_size(self, size_px: tuple[int, int]) -> tuple[int, int]:
        """The size (W_new, H_new) :meth:`preprocess_image` resizes a (W, H) image to (the reader's
        ``resize_to``: a JPEG 2000 study is then decoded at the level it needs)."""
        h, w = self.manifest.input_hw
        return letterbox_geometry(size_px, (w, h))[0]

    def decode(self, heatmaps: np.ndarray, tf: LetterboxTransform) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(K, h, w) heatmaps → (landmarks (K, 2) original px, confidence (K,), visible (K,) bool).

        With a level prior in the manifest (``codec.levels``) the vertebrae are decoded together as
        one chain anchored at C2 (:func:`cervisag_edge.core.chain.decode_chain`, docs/levels.md): a level
        the chain leaves out (out of frame, or no consistent evidence) is never visible.
        """
        if self.chain_prior is None:
            pts_in, conf = self.codec.decode(heatmaps)
            found = np.ones(len(conf), dtype=bool)
        else:
            res = decode_chain(heatmaps, self.chain_prior, self.codec)
            pts_in, conf, found = self.codec.heatmap_to_input(res.landmarks_hm), res.confidence, res.found
        pts = tf.to_original(pts_in)
        edge = edge_distance_input_px(pts, tf.original_size, tf.sx)
        return pts, conf, self.visibility.visible(conf, found, edge)

    def consistent(self, pts: np.ndarray, visible: np.ndarray, spacing_mm: tuple[float, float] | None,
                   facing_hint: float | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
        """(visible (K,) bool, names rejected) after the manifest's shape-consistency check
        (:mod:`cervisag_edge.core.consistency`; unchanged when it has none); ``facing_hint`` ±1
        from :func:`~cervisag_edge.core.parameters.facing_hint`."""
        if self.consistency is None:
            return visible, ()
        rejected, _ = self.consistency.check(pts, visible, spacing_mm, facing_hint)
        return visible & ~rejected, tuple(n for n, r in zip(LANDMARK_NAMES, rejected) if r)

    # -- public API ---------------------------------------------------------------------
    def measure(self, study: LoadedImage | str | os.PathLike[str], pixel_spacing_mm: tuple[float, float] | None = None
                ) -> Measurement:
        """Measure one study: a :class:`LoadedImage`, or a path (DICOM, PNG, JPEG, TIFF) that
        :func:`cervisag_edge.io.read_image` reads first (``pixel_spacing_mm`` (row, col) then
        overrides the file's; ``read_ms`` is that read). The result keeps the study."""
        t0 = time.perf_counter()
        if isinstance(study, LoadedImage):
            if pixel_spacing_mm is not None:
                raise ValueError(f"{study.path}: pixel_spacing_mm applies when reading a path; pass it to io.read_image")
            return self._measure(study, {"read_ms": 0.0}, t0)
        img = read_image(study, pixel_spacing_mm=pixel_spacing_mm, limits=self.limits, resize_to=self.resize_size)
        return self._measure(img, {"read_ms": _ms(t0)}, t0)

    def measure_array(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None = None, *, source: str = "<array>") -> Measurement:
        """Measure a (H, W) array. Floats in [0, 1] are taken as a display image (bone bright);
        other data is windowed to its 0.5–99.5 percentiles. ``spacing_mm`` is (row, col)."""
        t0 = time.perf_counter()
        display = display_from_array(pixels)
        from ..io.image import validate_user_spacing

        sp = validate_user_spacing(source, spacing_mm) if spacing_mm is not None else None
        warnings = () if sp else (f"{source}: no pixel spacing given; millimetre values are null",)
        img = LoadedImage(path=source, display=display, pixel_spacing_mm=sp, spacing_source="user" if sp else "none",
                          warnings=warnings, format="array")
        return self._measure(img, {"read_ms": _ms(t0)}, t0)

    def measure_many(self, paths: Iterable[str | os.PathLike[str]], pixel_spacing_mm: tuple[float, float] | None = None,
                     *, workers: int = 1, timeout_s: float | None = None) -> Iterator["StudyResult"]:
        """Measure many files through :func:`cervisag_edge.runner.run_studies`; yields one
        :class:`~cervisag_edge.runner.StudyResult` (``measurement`` or one-line ``error``) per file,
        in input order; one bad file never stops the others. ``workers > 1`` (or a ``timeout_s``)
        measures in worker processes built from :attr:`spec`; serially this Measurer is used."""
        from ..runner import Study, run_studies

        studies = [Study(i, str(p), pixel_spacing_mm) for i, p in enumerate(paths)]
        yield from run_studies(studies, self.spec, workers=workers, timeout_s=timeout_s, measurer=self)

    def measure_batch(self, images: Sequence[LoadedImage]) -> list[Measurement]:
        """Measure loaded studies with one batched inference call (a tensor batch of N rows,
        at most ``backend.max_batch``)."""
        if not images:
            return []
        mb = self.backend.max_batch
        if mb is not None and len(images) > mb:
            raise ValueError(f"batch of {len(images)} exceeds the backend's maximum batch {mb}")
        t0 = time.perf_counter()
        pre = [self.preprocess_image(im) for im in images]
        batch = np.concatenate([p[0] for p in pre], axis=0)
        pre_ms = _ms(t0)
        heatmaps, inf_ms = self.backend.infer_timed(batch)
        out = []
        for im, (x, tf), hm in zip(images, pre, heatmaps):
            timings = {"read_ms": 0.0, "preprocess_ms": pre_ms / len(images), "inference_ms": inf_ms / len(images)}
            out.append(self._finish(im, hm, tf, timings, time.perf_counter(), self._model_view(x, tf)))
        return out

    # -- internals ----------------------------------------------------------------------
    def _measure(self, img: LoadedImage, timings: dict[str, float], t_start: float) -> Measurement:
        t1 = time.perf_counter()
        x, tf = self.preprocess_image(img)
        timings["preprocess_ms"] = _ms(t1)
        heatmaps, timings["inference_ms"] = self.backend.infer_timed(x)
        return self._finish(img, heatmaps[0], tf, timings, t_start, self._model_view(x, tf))

    def _model_view(self, x: np.ndarray, tf: LetterboxTransform) -> np.ndarray:
        """The image as the model saw it: (1, 1, H_in, W_in) normalised input → (h, w) display in
        [0, 1] without the letterbox padding, for image statistics that must not build the
        full-resolution display (quality flags)."""
        w, h = (max(1, round(n * s)) for n, s in zip(tf.original_size, (tf.sx, tf.sy)))
        x0, y0 = int(round(tf.pad_x)), int(round(tf.pad_y))
        return x[0, 0, y0 : y0 + h, x0 : x0 + w] * self.manifest.std + self.manifest.mean

    def locate(self, img: LoadedImage, heatmaps: np.ndarray, tf: LetterboxTransform,
               timings: dict[str, float] | None = None) -> Located:
        """Every post-inference step before the parameters, in the runtime's order: decode (the
        level chain and the visibility rule), the second stage, the facing hint, the
        shape-consistency check, coincident pairs. ``heatmaps`` (K, h, w) of ``img`` through
        ``tf``; ``timings`` (ms) gains ``decode_ms`` and, with stage 2, ``refine_ms`` and
        ``refine_inference_ms``; the checks' time goes to the caller's ``parameters_ms``."""
        t = timings if timings is not None else {}
        t3 = time.perf_counter()
        pts, conf, reported = self.decode(heatmaps, tf)
        t["decode_ms"] = _ms(t3)
        refined = None
        if self.refiner is not None:
            r = self.refiner.refine(img, pts, reported)  # crops convert their windows only
            pts, refined = r.landmarks_px, r.refined
            t["refine_ms"] = r.crop_ms + r.inference_ms + r.decode_ms
            t["refine_inference_ms"] = r.inference_ms
        hint = facing_hint(pts, conf, tf.inside_original(pts))
        visible, rejected = self.consistent(pts, reported, img.pixel_spacing_mm, hint)
        visible = visible & ~coincident(pts, visible)
        return Located(pts, conf, reported, visible, refined, rejected, hint)

    def _finish(self, img: LoadedImage, heatmaps: np.ndarray, tf: LetterboxTransform,
                timings: dict[str, float], t_start: float, model_view: np.ndarray | None = None) -> Measurement:
        source = img.path
        t3 = time.perf_counter()
        loc = self.locate(img, heatmaps, tf, timings)
        checks_ms = _ms(t3) - timings["decode_ms"] - timings.get("refine_ms", 0.0)  # reported with the parameters
        t4 = time.perf_counter()
        pts, conf, refined, rejected = loc.landmarks_px, loc.confidence, loc.refined, loc.rejected
        sp = img.pixel_spacing_mm
        params, visible, problem = parameters_from_px(pts, loc.visible, sp, facing_hint=loc.facing_hint)
        warnings = list(img.warnings)
        if rejected:
            warnings.append(f"{source}: {', '.join(rejected)} not reported: inconsistent with the other landmarks "
                            f"(shape model d² > {self.consistency.max_d2:.1f})")
        if problem:
            warnings.append(f"{source}: {problem}")
        timings["parameters_ms"] = checks_ms + _ms(t4)
        n_hidden = int((~visible).sum())
        if n_hidden:
            warnings.append(f"{source}: {n_hidden} landmark(s) below {self.visibility.describe()} or outside the image")
        landmarks = tuple(
            Landmark(name, float(p[0]), float(p[1]),
                     float(p[0] * sp[1]) if sp else None, float(p[1] * sp[0]) if sp else None, float(c), bool(v))
            for name, p, c, v in zip(LANDMARK_NAMES, pts, conf, visible)
        )
        timings["total_ms"] = _ms(t_start)
        return annotate(Measurement(
            source=source, landmarks=landmarks, parameters=params, pixel_spacing_mm=sp, spacing_source=img.spacing_source,
            image_size_px=img.size_px, model_id=self.manifest.model_id, model_sha256=self.manifest.sha256,
            backend=self.backend_name, precision=self.precision, timings_ms=dict(timings), warnings=tuple(warnings),
            study=img,
        ), heatmaps, tf, self.codec, model_view, self.uncertainty, estimates=self.estimates, refined=refined)

    def close(self) -> None:
        self.backend.deactivate()
        if self.refiner is not None:
            self.refiner.backend.deactivate()

    def __enter__(self) -> "Measurer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
