"""The Measurer: read → preprocess → infer → decode → parameters, one model loaded once.

>>> from cervisag_edge import Measurer
>>> m = Measurer()                       # shipped model, ONNX Runtime on the CPU
>>> result = m.measure("study.dcm")      # frozen Measurement
>>> result.parameters.cobb_c2_c7_deg

Thread safety: a Measurer may be shared by several threads. Every stage is a pure function
of its inputs; the backend serialises calls itself when its engine is not thread-safe
(``Backend.thread_safe``); ONNX Runtime sessions are.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import fields
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .backends import get_backend_class
from .backends.base import Backend
from .codec import UDPHeatmapCodec
from .engine_select import choose_backend, gpu_available, manifest_path_for, tensorrt_available
from .errors import CervisagError, InputError, ModelError
from .io import LoadedImage, ReadLimits, display_from_array, read_image
from .landmarks import LANDMARK_NAMES, VERTEBRAE
from .manifest import ModelManifest, load_manifest
from .measurement import Landmark, Measurement
from .parameters import PARAMETER_NAMES, SEGMENTS, SagittalParameters, compute_parameters
from .preprocess import LetterboxTransform, letterbox, letterbox_geometry, normalize

logger = logging.getLogger(__name__)

STAGES = ("read_ms", "preprocess_ms", "inference_ms", "decode_ms", "parameters_ms", "total_ms")


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def coincident(pts: np.ndarray, visible: np.ndarray, min_px: float = 0.5) -> np.ndarray:
    """(K,) bool: visible landmarks lying within ``min_px`` of another visible one. Two anatomical
    points never coincide, so such a pair means the model confused them; both are dropped."""
    p = np.where(visible[:, None], pts, np.nan)
    d = np.hypot(p[:, None, 0] - p[None, :, 0], p[:, None, 1] - p[None, :, 1])
    np.fill_diagonal(d, np.inf)
    with np.errstate(invalid="ignore"):
        return np.any(d < min_px, axis=1)


def unavailable_parameters(missing: tuple[str, ...]) -> SagittalParameters:
    """A result with every value None, for images where no geometry could be computed."""
    args: dict[str, object] = {f.name: None for f in fields(SagittalParameters)}
    args.update(segmental_deg={k: None for k in SEGMENTS}, anterior_height_mm={v: None for v in VERTEBRAE},
                posterior_height_mm={v: None for v in VERTEBRAE}, missing=missing,
                unavailable={name: missing for name in PARAMETER_NAMES}, facing="right")
    return SagittalParameters(**args)  # type: ignore[arg-type]


class Measurer:
    """Loads one model on one backend, then measures images.

    ``model``: None (the shipped model), a model name in ``engines/``, or a manifest/ONNX path.
    ``backend``: ``onnxruntime`` (default), ``tensorrt``, ``torch`` or ``auto``.
    ``precision``: ``fp32``, ``fp16`` or ``int8`` (the variant that suits the backend is chosen).
    ``confidence_threshold``: landmarks below it are not visible (default: the manifest's).
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, backend: str = "onnxruntime", precision: str = "fp32",
                 *, threads: int | None = None, confidence_threshold: float | None = None,
                 limits: ReadLimits | None = None, providers: Sequence[str] = ("cpu",)) -> None:
        t0 = time.perf_counter()
        if backend in ("auto", "tensorrt"):
            plan = manifest_path_for(model, "tensorrt", precision)
            backend, reason = choose_backend(backend, gpu_available=gpu_available(), tensorrt_available=tensorrt_available(),
                                             plan_manifest_ok=plan.is_file())
            logger.info("backend: %s", reason)
        manifest_path = manifest_path_for(model, backend if backend != "torch" else "onnxruntime", precision)
        if not manifest_path.is_file():
            raise ModelError(f"{manifest_path}: no {precision} model for backend {backend!r} (manifest not found)")
        self.manifest: ModelManifest = load_manifest(manifest_path)
        options = {"threads": threads}
        if backend == "onnxruntime":
            options["providers"] = tuple(providers)
        cls = get_backend_class(backend)
        self.backend: Backend = cls(self.manifest, **options)
        self.backend_name = backend
        self.precision = precision
        self.codec = UDPHeatmapCodec.from_manifest(self.manifest.codec)
        default_thr = float(self.manifest.codec.get("confidence_threshold", 0.3))
        self.confidence_threshold = default_thr if confidence_threshold is None else float(confidence_threshold)
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"confidence_threshold {self.confidence_threshold} must lie in [0, 1]")
        self.limits = limits or ReadLimits()
        self.load_ms = _ms(t0)
        logger.debug("loaded %s on %s in %.1f ms", self.manifest.model_id, backend, self.load_ms)

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

    def decode(self, heatmaps: np.ndarray, tf: LetterboxTransform) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(K, h, w) heatmaps → (landmarks (K, 2) original px, confidence (K,), visible (K,) bool)."""
        pts_in, conf = self.codec.decode(heatmaps)
        pts = tf.to_original(pts_in)
        visible = (conf >= self.confidence_threshold) & tf.inside_original(pts)
        return pts, conf, visible

    # -- public API ---------------------------------------------------------------------
    def measure(self, path: str | os.PathLike[str], pixel_spacing_mm: tuple[float, float] | None = None) -> Measurement:
        """Measure one image file (DICOM, PNG, JPEG, TIFF)."""
        t0 = time.perf_counter()
        img = read_image(path, pixel_spacing_mm=pixel_spacing_mm, limits=self.limits)
        read_ms = _ms(t0)
        return self._measure_loaded(img, str(path), {"read_ms": read_ms}, t0)

    def measure_image(self, img: LoadedImage) -> Measurement:
        """Measure an image already read with :func:`cervisag_edge.io.read_image` (``read_ms`` = 0)."""
        return self._measure_loaded(img, img.path, {"read_ms": 0.0}, time.perf_counter())

    def measure_array(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None = None, *, source: str = "<array>") -> Measurement:
        """Measure a (H, W) array. Floats in [0, 1] are taken as a display image (bone bright);
        other data is windowed to its 0.5–99.5 percentiles. ``spacing_mm`` is (row, col)."""
        t0 = time.perf_counter()
        display = display_from_array(pixels)
        from .io.image import validate_user_spacing

        sp = validate_user_spacing(source, spacing_mm) if spacing_mm is not None else None
        warnings = () if sp else (f"{source}: no pixel spacing given; millimetre values are null",)
        img = LoadedImage(path=source, display=display, pixel_spacing_mm=sp, spacing_source="user" if sp else "none",
                          warnings=warnings, format="array")
        return self._measure_loaded(img, source, {"read_ms": _ms(t0)}, t0)

    def measure_many(self, paths: Iterable[str | os.PathLike[str]], pixel_spacing_mm: tuple[float, float] | None = None
                     ) -> Iterator[tuple[str, Measurement | None, str | None]]:
        """Yield ``(path, measurement, None)`` or ``(path, None, error)`` per file; one bad file never
        stops the others."""
        for p in paths:
            try:
                yield str(p), self.measure(p, pixel_spacing_mm), None
            except CervisagError as exc:
                yield str(p), None, str(exc)
            except (ValueError, OSError) as exc:
                yield str(p), None, f"{p}: {type(exc).__name__}: {exc}"

    def measure_batch(self, images: Sequence[LoadedImage]) -> list[Measurement]:
        """Measure already-read images with one batched inference call."""
        if not images:
            return []
        mb = self.backend.max_batch
        if mb is not None and len(images) > mb:
            raise ValueError(f"batch of {len(images)} exceeds the backend's maximum batch {mb}")
        t0 = time.perf_counter()
        pre = [self.preprocess_image(im) for im in images]
        batch = np.concatenate([p[0] for p in pre], axis=0)
        pre_ms = _ms(t0)
        t1 = time.perf_counter()
        heatmaps = self.backend.infer(batch)
        inf_ms = _ms(t1)
        out = []
        for im, (_, tf), hm in zip(images, pre, heatmaps):
            timings = {"read_ms": 0.0, "preprocess_ms": pre_ms / len(images), "inference_ms": inf_ms / len(images)}
            out.append(self._finish(im, im.path, hm, tf, timings, time.perf_counter()))
        return out

    # -- internals ----------------------------------------------------------------------
    def _measure_loaded(self, img: LoadedImage, source: str, timings: dict[str, float], t_start: float) -> Measurement:
        t1 = time.perf_counter()
        x, tf = self.preprocess_image(img)
        timings["preprocess_ms"] = _ms(t1)
        t2 = time.perf_counter()
        heatmaps = self.backend.infer(x)[0]
        timings["inference_ms"] = _ms(t2)
        return self._finish(img, source, heatmaps, tf, timings, t_start)

    def _finish(self, img: LoadedImage, source: str, heatmaps: np.ndarray, tf: LetterboxTransform,
                timings: dict[str, float], t_start: float) -> Measurement:
        t3 = time.perf_counter()
        pts, conf, visible = self.decode(heatmaps, tf)
        timings["decode_ms"] = _ms(t3)
        t4 = time.perf_counter()
        sp = img.pixel_spacing_mm
        visible = visible & ~coincident(pts, visible)
        pts_for_params = np.where(visible[:, None], pts, np.nan)
        warnings = list(img.warnings)
        try:
            if sp is not None:
                params = compute_parameters(pts_for_params * np.array([sp[1], sp[0]]))
            else:
                params = compute_parameters(pts_for_params).without_lengths()
        except ValueError as exc:  # no usable geometry (e.g. too few landmarks to tell the facing)
            warnings.append(f"{source}: parameters not computed: {exc}")
            params = unavailable_parameters(tuple(n for n, v in zip(LANDMARK_NAMES, visible) if not v))
        timings["parameters_ms"] = _ms(t4)
        n_hidden = int((~visible).sum())
        if n_hidden:
            warnings.append(f"{source}: {n_hidden} landmark(s) below confidence {self.confidence_threshold:g} or outside the image")
        landmarks = tuple(
            Landmark(name, float(p[0]), float(p[1]),
                     float(p[0] * sp[1]) if sp else None, float(p[1] * sp[0]) if sp else None, float(c), bool(v))
            for name, p, c, v in zip(LANDMARK_NAMES, pts, conf, visible)
        )
        timings["total_ms"] = _ms(t_start)
        return Measurement(
            source=source, landmarks=landmarks, parameters=params, pixel_spacing_mm=sp, spacing_source=img.spacing_source,
            image_size_px=img.size_px, model_id=self.manifest.model_id, model_sha256=self.manifest.sha256,
            backend=self.backend_name, precision=self.precision, timings_ms=dict(timings), warnings=tuple(warnings),
        )

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "Measurer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
