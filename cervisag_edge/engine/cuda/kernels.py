"""CUDA C++ sources of the GPU kernels and their launch geometry (pure Python, no CUDA needed).

Two kernels, each with a numpy twin in :mod:`.reference`:

* ``preprocess_u16``: raw uint16 (H, W) → rescale (slope/intercept) → LINEAR VOI window →
  optional MONOCHROME1 inversion → letterbox resize (area average for downscaling, like
  ``cv2.INTER_AREA``; bilinear with half-pixel centres for upscaling, like ``cv2.INTER_LINEAR``)
  → pad → ``(x - mean) / std``; writes the (H_in, W_in) float32 model input in one pass.
* ``decode_dark``: heatmaps (N, K, h, w) float32 → per map argmax (first index on ties) + DARK
  refinement on a Gaussian-smoothed patch + the raw maximum as confidence → (N, K, 3) float32
  ``(x, y, score)`` in model-input px (UDP scale), so heatmaps never leave the GPU.

The math is not restated here: the letterbox geometry comes from
``preprocess.letterbox_geometry``, the window constants from ``imaging.linear_window_terms``,
the Gaussian taps and DARK's floor from ``codec.gaussian_taps`` / ``codec.DARK_EPS``. Each
kernel carries ``__launch_bounds__`` equal to the largest block its geometry function allows,
so the compiler keeps registers per thread within what such a block can get (checked with
ptxas in ``tests/test_cuda_kernels.py``).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from ..codec import DARK_EPS, gaussian_taps

PREPROCESS_BLOCK: tuple[int, int, int] = (32, 8, 1)
#: Largest block of ``preprocess_u16`` (its ``__launch_bounds__``).
PREPROCESS_MAX_THREADS = 256
DECODE_THREADS = 256
#: Largest block of ``decode_dark`` (its ``__launch_bounds__``): its FP64 DARK step needs ~144
#: registers per thread on sm_90, so 1024 threads (147 456 registers) could never launch.
DECODE_MAX_THREADS = 256
#: Kernel name → the most threads per block it is compiled for.
MAX_THREADS: dict[str, int] = {"preprocess_u16": PREPROCESS_MAX_THREADS, "decode_dark": DECODE_MAX_THREADS}


@dataclass(frozen=True)
class LaunchGeometry:
    """CUDA grid and block sizes (x, y, z) and dynamic shared memory in bytes."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_bytes: int = 0

    @property
    def threads(self) -> int:
        return int(np.prod(self.grid)) * int(np.prod(self.block))


def preprocess_geometry(out_hw: tuple[int, int], block: tuple[int, int, int] = PREPROCESS_BLOCK) -> LaunchGeometry:
    """One thread per output pixel of an (H_in, W_in) input: grid covers it with ``block`` tiles."""
    h, w = int(out_hw[0]), int(out_hw[1])
    if h < 1 or w < 1:
        raise ValueError(f"output size {(h, w)} must be at least 1×1")
    if block[0] * block[1] * block[2] > PREPROCESS_MAX_THREADS:
        raise ValueError(f"block {block} exceeds {PREPROCESS_MAX_THREADS} threads (the kernel's __launch_bounds__)")
    return LaunchGeometry(grid=(math.ceil(w / block[0]), math.ceil(h / block[1]), 1), block=block)


def decode_geometry(n_maps: int, threads: int = DECODE_THREADS) -> LaunchGeometry:
    """One block per heatmap (N·K blocks), ``threads`` threads (a power of two) reduce the argmax."""
    if n_maps < 1:
        raise ValueError(f"number of heatmaps {n_maps} must be >= 1")
    if threads < 32 or threads > DECODE_MAX_THREADS or threads & (threads - 1):
        raise ValueError(f"threads {threads} must be a power of two in 32..{DECODE_MAX_THREADS} (the kernel's __launch_bounds__)")
    return LaunchGeometry(grid=(int(n_maps), 1, 1), block=(threads, 1, 1), shared_bytes=threads * 8)


def letterbox_size(src_hw: tuple[int, int], out_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(new_h, new_w, pad_y, pad_x) of the letterbox of an (H, W) image into (H_in, W_in).

    ``preprocess.letterbox_geometry`` (the one definition) in the kernel's argument order.
    """
    from ..preprocess import letterbox_geometry

    H, W = int(src_hw[0]), int(src_hw[1])
    H_in, W_in = int(out_hw[0]), int(out_hw[1])
    if min(H, W, H_in, W_in) < 1:
        raise ValueError(f"sizes {(H, W)} → {(H_in, W_in)} must be at least 1×1")
    (new_w, new_h), tf = letterbox_geometry((W, H), (W_in, H_in))
    return new_h, new_w, int(tf.pad_y), int(tf.pad_x)


PREPROCESS_SOURCE = r"""
extern "C" __device__ __forceinline__ float cv_display(unsigned short raw, double slope, double intercept,
                                                     float c_minus_half, float inv_w_minus_1, int invert) {
    float v = (float)__dadd_rn(__dmul_rn((double)raw, slope), intercept);  /* no FMA: as numpy rounds */
    /* imaging.window_linear divides by (w - 1); a multiply by its reciprocal keeps IEEE division's
       slow-path call (and the stack frame ptxas reports as spills) out of the kernel: <= 1 ulp apart. */
    float y = (v - c_minus_half) * inv_w_minus_1 + 0.5f;
    y = fminf(fmaxf(y, 0.0f), 1.0f);
    return invert ? 1.0f - y : y;
}

extern "C" __global__ void __launch_bounds__({max_threads}) preprocess_u16(
    const unsigned short* __restrict__ src, int src_h, int src_w,
    float* __restrict__ dst, int dst_h, int dst_w,
    int new_h, int new_w, int pad_y, int pad_x,
    double slope, double intercept, float c_minus_half, float inv_w_minus_1, int invert,
    float mean, float inv_std, float pad_value, int area)
{
    int ox = blockIdx.x * blockDim.x + threadIdx.x;
    int oy = blockIdx.y * blockDim.y + threadIdx.y;
    if (ox >= dst_w || oy >= dst_h) return;
    int dx = ox - pad_x, dy = oy - pad_y;
    float value;
    if (dx < 0 || dy < 0 || dx >= new_w || dy >= new_h) {
        value = pad_value;
    } else if (area) {
        double inv_x = (double)src_w / (double)new_w, inv_y = (double)src_h / (double)new_h;
        double x0 = dx * inv_x, x1 = fmin((dx + 1) * inv_x, (double)src_w);
        double y0 = dy * inv_y, y1 = fmin((dy + 1) * inv_y, (double)src_h);
        int jx0 = (int)floor(x0), jx1 = min((int)ceil(x1), src_w);
        int jy0 = (int)floor(y0), jy1 = min((int)ceil(y1), src_h);
        float acc = 0.0f, wsum = 0.0f;
        for (int j = jy0; j < jy1; ++j) {
            float wy = (float)(fmin((double)(j + 1), y1) - fmax((double)j, y0));
            if (wy <= 0.0f) continue;
            const unsigned short* row = src + (size_t)j * src_w;
            float racc = 0.0f, rw = 0.0f;
            for (int i = jx0; i < jx1; ++i) {
                float wx = (float)(fmin((double)(i + 1), x1) - fmax((double)i, x0));
                if (wx <= 0.0f) continue;
                racc += wx * cv_display(row[i], slope, intercept, c_minus_half, inv_w_minus_1, invert);
                rw += wx;
            }
            acc += wy * racc;
            wsum += wy * rw;
        }
        value = acc / wsum;
    } else {
        float sx = (float)((dx + 0.5) * ((double)src_w / new_w) - 0.5);
        float sy = (float)((dy + 0.5) * ((double)src_h / new_h) - 0.5);
        sx = fminf(fmaxf(sx, 0.0f), (float)(src_w - 1));
        sy = fminf(fmaxf(sy, 0.0f), (float)(src_h - 1));
        int x0 = (int)floorf(sx), y0 = (int)floorf(sy);
        int x1 = min(x0 + 1, src_w - 1), y1 = min(y0 + 1, src_h - 1);
        float fx = sx - x0, fy = sy - y0;
        float a = cv_display(src[(size_t)y0 * src_w + x0], slope, intercept, c_minus_half, inv_w_minus_1, invert);
        float b = cv_display(src[(size_t)y0 * src_w + x1], slope, intercept, c_minus_half, inv_w_minus_1, invert);
        float c = cv_display(src[(size_t)y1 * src_w + x0], slope, intercept, c_minus_half, inv_w_minus_1, invert);
        float d = cv_display(src[(size_t)y1 * src_w + x1], slope, intercept, c_minus_half, inv_w_minus_1, invert);
        value = (1.0f - fy) * ((1.0f - fx) * a + fx * b) + fy * ((1.0f - fx) * c + fx * d);
    }
    dst[(size_t)oy * dst_w + ox] = (value - mean) * inv_std;
}
"""

_DECODE_TEMPLATE = r"""
#define TAPS {ntaps}
#define RADIUS {radius}
#define HALF (RADIUS + 1)
#define PATCH (2 * HALF + 1)
__constant__ double kTaps[TAPS] = {{ {taps} }};

extern "C" __global__ void __launch_bounds__({max_threads}) decode_dark(const float* __restrict__ heatmaps, int h, int w,
                                       float* __restrict__ out, float scale_x, float scale_y)
{{
    extern __shared__ unsigned char smem[];
    float* sval = (float*)smem;
    int* sidx = (int*)(sval + blockDim.x);
    const float* hm = heatmaps + (size_t)blockIdx.x * h * w;
    int n = h * w;
    float best = __int_as_float(0xff800000); int bidx = 0x7fffffff;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {{
        float v = hm[i];
        if (v > best || (v == best && i < bidx)) {{ best = v; bidx = i; }}
    }}
    sval[threadIdx.x] = best; sidx[threadIdx.x] = bidx;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {{
        if (threadIdx.x < s) {{
            float ov = sval[threadIdx.x + s]; int oi = sidx[threadIdx.x + s];
            float mv = sval[threadIdx.x]; int mi = sidx[threadIdx.x];
            if (ov > mv || (ov == mv && oi < mi)) {{ sval[threadIdx.x] = ov; sidx[threadIdx.x] = oi; }}
        }}
        __syncthreads();
    }}
    if (threadIdx.x != 0) return;
    int idx = sidx[0] == 0x7fffffff ? 0 : sidx[0];
    double score = (double)sval[0];
    int iy = idx / w, ix = idx % w;
    double patch[PATCH][PATCH];
    for (int a = 0; a < PATCH; ++a) {{
        int yy = min(max(iy + a - HALF, 0), h - 1);
        for (int b = 0; b < PATCH; ++b) {{
            int xx = min(max(ix + b - HALF, 0), w - 1);
            patch[a][b] = (double)hm[(size_t)yy * w + xx];
        }}
    }}
    double rows[PATCH][3];
    for (int a = 0; a < PATCH; ++a)
        for (int b = 0; b < 3; ++b) {{
            double acc = 0.0;
            for (int t = 0; t < TAPS; ++t) acc += patch[a][b + t] * kTaps[t];
            rows[a][b] = acc;
        }}
    double lp[3][3];
    for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b) {{
            double acc = 0.0;
            for (int t = 0; t < TAPS; ++t) acc += rows[a + t][b] * kTaps[t];
            lp[a][b] = log(fmax(acc, {eps}));
        }}
    double c = lp[1][1];
    double dx = 0.5 * (lp[1][2] - lp[1][0]);
    double dy = 0.5 * (lp[2][1] - lp[0][1]);
    double dxx = lp[1][2] - 2.0 * c + lp[1][0];
    double dyy = lp[2][1] - 2.0 * c + lp[0][1];
    double dxy = 0.25 * (lp[2][2] - lp[2][0] - lp[0][2] + lp[0][0]);
    double det = dxx * dyy - dxy * dxy;
    double ox = 0.0, oy = 0.0;
    if (det > 1e-12 && dxx < 0.0 && score > {eps}) {{
        ox = -(dyy * dx - dxy * dy) / det;
        oy = -(dxx * dy - dxy * dx) / det;
    }}
    ox = fmin(fmax(ox, -1.0), 1.0);
    oy = fmin(fmax(oy, -1.0), 1.0);
    float* o = out + (size_t)blockIdx.x * 3;
    o[0] = (float)((ix + ox) * scale_x);
    o[1] = (float)((iy + oy) * scale_y);
    o[2] = (float)score;
}}
"""

def decode_source(blur_sigma: float = 1.0) -> str:
    """CUDA source of ``decode_dark`` with the Gaussian taps of ``blur_sigma`` baked in."""
    taps = gaussian_taps(blur_sigma)
    radius = len(taps) // 2
    # Without blur the CPU codec still reads a (2·1+1)² window: HALF = 1 means a 3×3 patch.
    return _DECODE_TEMPLATE.format(
        ntaps=len(taps), radius=radius, taps=", ".join(repr(float(t)) for t in taps), eps=repr(DARK_EPS),
        max_threads=DECODE_MAX_THREADS,
    )


def preprocess_source() -> str:
    """CUDA source of ``preprocess_u16``."""
    return PREPROCESS_SOURCE.replace("{max_threads}", str(PREPROCESS_MAX_THREADS))


def all_sources(blur_sigma: float = 1.0) -> dict[str, tuple[str, tuple[str, ...]]]:
    """File name → (CUDA source, kernel names) of every module the GPU path compiles."""
    return {"preprocess.cu": (preprocess_source(), ("preprocess_u16",)), "decode.cu": (decode_source(blur_sigma), ("decode_dark",))}


def cache_key(source: str, arch: str, options: tuple[str, ...] = ()) -> str:
    """Key of a compiled module: sha256 of source, target architecture and NVRTC options."""
    h = hashlib.sha256()
    for part in (source, arch, *options):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()
