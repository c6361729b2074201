"""Heatmap codec shared by training and runtime: UDP encoding, DARK-UDP decoding. Pure numpy.

Shape legend: N batch, K landmarks (34), h × w heatmap, H × W model input.

Pixel alignment follows UDP (Huang et al., "The Devil is in the Details: Delving into
Unbiased Data Processing for Human Pose Estimation", CVPR 2020): pixel centres sit at
integer coordinates in both the model input and the heatmap, and the two grids are related
by ``x_hm = x_in * (w - 1) / (W - 1)`` (likewise for y), so that the first and the last pixel
centres coincide. Encoding and decoding use the same mapping, so the round trip is unbiased;
mixing this with the MSRA convention (``x_hm = x_in / stride``) leaves a constant error of
about half a stride, which ``tests/test_codec.py`` catches.

Decoding is argmax plus DARK sub-pixel refinement (Zhang et al., "Distribution-Aware
Coordinate Representation for Human Pose Estimation", CVPR 2020): the heatmap is smoothed
with a Gaussian around the peak, its logarithm is expanded to second order, and the peak
moves by ``-H⁻¹ ∇`` (clipped to one pixel). Only a small patch around each peak is touched,
so decoding costs O(N·K·patch²) rather than a full-heatmap blur.

The per-landmark confidence is the heatmap maximum: targets peak at ``amplitude`` (1.0 for
visible landmarks, ``hidden_amplitude`` for labelled but hidden ones, 0 outside the image).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class UDPHeatmapCodec:
    """Gaussian heatmap encoder/decoder with UDP alignment and DARK refinement.

    ``input_size`` and ``heatmap_size`` are (W, H) and (w, h); ``sigma`` is in heatmap px.
    """

    input_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    sigma: float = 2.0
    hidden_amplitude: float = 0.35
    blur_sigma: float = 1.0

    def __post_init__(self) -> None:
        for label, (a, b) in (("input_size", self.input_size), ("heatmap_size", self.heatmap_size)):
            if a < 2 or b < 2:
                raise ValueError(f"{label} {(a, b)} too small, expected both sides >= 2")
        if not self.sigma > 0:
            raise ValueError(f"sigma {self.sigma!r} must be > 0")

    # -- coordinate mapping -------------------------------------------------------------
    @property
    def scale_xy(self) -> np.ndarray:
        """(2,) factors mapping input px to heatmap px (UDP)."""
        (W, H), (w, h) = self.input_size, self.heatmap_size
        return np.array([(w - 1) / (W - 1), (h - 1) / (H - 1)], dtype=np.float64)

    def input_to_heatmap(self, pts_in: np.ndarray) -> np.ndarray:
        return np.asarray(pts_in, dtype=np.float64) * self.scale_xy

    def heatmap_to_input(self, pts_hm: np.ndarray) -> np.ndarray:
        return np.asarray(pts_hm, dtype=np.float64) / self.scale_xy

    # -- encode -------------------------------------------------------------------------
    def encode(self, keypoints_in: np.ndarray, visibility: np.ndarray | None = None) -> np.ndarray:
        """Target heatmaps for one image.

        keypoints_in: (K, 2) float positions in model-input px (NaN allowed).
        visibility: (K,) COCO flags; 2 → amplitude 1, 1 → ``hidden_amplitude``, 0 → empty map.
        Returns (K, h, w) float32.
        """
        kp = np.asarray(keypoints_in, dtype=np.float64)
        if kp.ndim != 2 or kp.shape[1] != 2:
            raise ValueError(f"keypoints must have shape (K, 2), got {kp.shape}")
        K = kp.shape[0]
        vis = np.full(K, 2, dtype=np.int64) if visibility is None else np.asarray(visibility).astype(np.int64)
        if vis.shape != (K,):
            raise ValueError(f"visibility must have shape ({K},), got {vis.shape}")
        w, h = self.heatmap_size
        amp = np.where(vis >= 2, 1.0, np.where(vis == 1, self.hidden_amplitude, 0.0))
        hm_pts = self.input_to_heatmap(kp)
        inside = np.all(np.isfinite(hm_pts), axis=1)
        inside &= (hm_pts[:, 0] >= -0.5) & (hm_pts[:, 0] <= w - 0.5) & (hm_pts[:, 1] >= -0.5) & (hm_pts[:, 1] <= h - 0.5)
        amp = np.where(inside, amp, 0.0)
        cx = np.where(inside, hm_pts[:, 0], 0.0)
        cy = np.where(inside, hm_pts[:, 1], 0.0)
        xs = np.arange(w, dtype=np.float64)
        ys = np.arange(h, dtype=np.float64)
        gx = np.exp(-((xs[None, :] - cx[:, None]) ** 2) / (2 * self.sigma**2))  # (K, w)
        gy = np.exp(-((ys[None, :] - cy[:, None]) ** 2) / (2 * self.sigma**2))  # (K, h)
        return (amp[:, None, None] * gy[:, :, None] * gx[:, None, :]).astype(np.float32)

    # -- decode -------------------------------------------------------------------------
    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks in model-input px and their confidence.

        heatmaps: (K, h, w) or (N, K, h, w). Returns coords (…, K, 2) float64 in input px and
        scores (…, K) float64 (the heatmap maximum).
        """
        coords_hm, scores = decode_dark(heatmaps, blur_sigma=self.blur_sigma)
        return self.heatmap_to_input(coords_hm), scores

    def to_manifest(self) -> dict[str, Any]:
        return {
            "type": "udp-dark",
            "sigma": self.sigma,
            "hidden_amplitude": self.hidden_amplitude,
            "blur_sigma": self.blur_sigma,
            "input_size": list(self.input_size),
            "heatmap_size": list(self.heatmap_size),
        }

    @classmethod
    def from_manifest(cls, codec: Mapping[str, Any]) -> "UDPHeatmapCodec":
        kind = codec.get("type")
        if kind != "udp-dark":
            raise ValueError(f"codec type {kind!r} is not supported; expected 'udp-dark'")
        return cls(
            input_size=tuple(int(v) for v in codec["input_size"]),  # type: ignore[arg-type]
            heatmap_size=tuple(int(v) for v in codec["heatmap_size"]),  # type: ignore[arg-type]
            sigma=float(codec.get("sigma", 2.0)),
            hidden_amplitude=float(codec.get("hidden_amplitude", 0.35)),
            blur_sigma=float(codec.get("blur_sigma", 1.0)),
        )


#: Floor of the heatmap values before DARK takes their logarithm (and the least score refined).
DARK_EPS = 1e-10


def gaussian_taps(blur_sigma: float) -> np.ndarray:
    """(2r + 1,) float64 normalised 1-D Gaussian of radius r = ceil(3σ) (at least 1) for DARK's blur.

    ``blur_sigma`` <= 0 gives the single tap [1.0] (no smoothing). The one definition of the
    taps: the CPU decode and the ``decode_dark`` CUDA kernel (:mod:`cuda.kernels`) both use it.
    """
    if blur_sigma <= 0:
        return np.ones(1, dtype=np.float64)
    r = max(1, int(np.ceil(3 * blur_sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * blur_sigma**2))
    return k / k.sum()


def decode_dark(heatmaps: np.ndarray, blur_sigma: float = 1.0, eps: float = DARK_EPS) -> tuple[np.ndarray, np.ndarray]:
    """Argmax + DARK refinement, vectorised over (N, K).

    heatmaps: (K, h, w) or (N, K, h, w). Returns (coords (…, K, 2) in heatmap px, scores (…, K)).
    ``blur_sigma`` <= 0 skips the smoothing (exact for noise-free Gaussian targets).
    """
    hm = np.asarray(heatmaps)
    squeeze = hm.ndim == 3
    if squeeze:
        hm = hm[None]
    if hm.ndim != 4:
        raise ValueError(f"heatmaps must have shape (K, h, w) or (N, K, h, w), got {np.shape(heatmaps)}")
    N, K, h, w = hm.shape
    flat = hm.reshape(N, K, h * w)
    idx = np.argmax(flat, axis=2)
    scores = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0].astype(np.float64)
    iy, ix = np.divmod(idx, w)

    kern = gaussian_taps(blur_sigma)
    r = len(kern) // 2
    half = r + 1  # one extra pixel each side for the finite differences
    offs = np.arange(-half, half + 1)
    ys = np.clip(iy[..., None] + offs, 0, h - 1)  # (N, K, P)
    xs = np.clip(ix[..., None] + offs, 0, w - 1)
    n_idx = np.arange(N)[:, None, None, None]
    k_idx = np.arange(K)[None, :, None, None]
    patch = hm[n_idx, k_idx, ys[..., :, None], xs[..., None, :]].astype(np.float64)  # (N, K, P, P)
    if r > 0 or blur_sigma > 0:
        # separable valid convolution -> (N, K, 3, 3)
        P = patch.shape[-1]
        win = np.lib.stride_tricks.sliding_window_view(patch, len(kern), axis=-1)  # (N,K,P,P-2r,L)
        patch = win @ kern
        win = np.lib.stride_tricks.sliding_window_view(patch, len(kern), axis=-2)  # (N,K,P-2r,P-2r,L)
        patch = win @ kern
        del P
    logp = np.log(np.maximum(patch, eps))
    c = logp[..., 1, 1]
    dx = 0.5 * (logp[..., 1, 2] - logp[..., 1, 0])
    dy = 0.5 * (logp[..., 2, 1] - logp[..., 0, 1])
    dxx = logp[..., 1, 2] - 2 * c + logp[..., 1, 0]
    dyy = logp[..., 2, 1] - 2 * c + logp[..., 0, 1]
    dxy = 0.25 * (logp[..., 2, 2] - logp[..., 2, 0] - logp[..., 0, 2] + logp[..., 0, 0])
    det = dxx * dyy - dxy**2
    ok = (det > 1e-12) & (dxx < 0) & (scores > eps)
    safe = np.where(ok, det, 1.0)
    ox = np.where(ok, -(dyy * dx - dxy * dy) / safe, 0.0)
    oy = np.where(ok, -(dxx * dy - dxy * dx) / safe, 0.0)
    ox = np.clip(ox, -1.0, 1.0)
    oy = np.clip(oy, -1.0, 1.0)
    coords = np.stack([ix + ox, iy + oy], axis=-1).astype(np.float64)
    if squeeze:
        return coords[0], scores[0]
    return coords, scores
