"""Published adult cervical morphometry used by the phantom: one table, one sampler.

Every anatomical number the spine and head geometry draws from lives in :data:`MORPHOMETRY`
(mean, subject-to-subject SD, hard bounds, source). ``docs/phantoms.md`` prints the same table
(:func:`markdown_table` writes it) and ``tests/test_phantom_anatomy.py`` checks the generated
landmarks against it. Rows marked "estimate" are engineering judgements, not published values.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dim:
    """One dimension: normal(mean, sd) truncated to [lo, hi] (mm unless the key says otherwise)."""

    key: str
    mean: float
    sd: float
    lo: float
    hi: float
    source: str


_DRY_AXIS = "morphometric study of the axis, dry bones (n = 52)"
_SUB = "dry-vertebra series (n = 100); NW Indian series"
_DEPTH = "Ebraheim et al., Spine 1998; Katz et al. 1976 (radiographs)"
_DISC = "Lee et al. (coin-calibrated radiographs); J Turk Spinal Surg 2014"

#: Every number of the phantom anatomy, with its source. Heights of C3–C7 are the anterior /
#: posterior body heights; the mid-disc height is chord to chord (endplate corner lines), so the
#: measured middle height adds the endplate concavities (about 1.5 mm).
MORPHOMETRY: tuple[Dim, ...] = (
    Dim("C2_body_h_ant_mm", 18.7, 2.2, 15.0, 22.5, _DRY_AXIS),
    Dim("C2_body_h_post_mm", 16.0, 1.9, 13.0, 19.5, _DRY_AXIS),
    Dim("C2_body_depth_mm", 14.9, 1.1, 13.0, 17.0, _DRY_AXIS),
    Dim("dens_h_mm", 16.4, 1.5, 14.0, 19.0, "Gosavi 2012; Teo et al. (CT): 14.9–17.8 across series"),
    Dim("C2_total_h_mm", 38.0, 2.0, 34.0, 42.0, "Yousuf, IJRMS (dens tip to inferior endplate)"),
    Dim("dens_w_mm", 9.8, 0.8, 8.3, 11.5, "Gosavi 2012 (dens AP diameter)"),
    Dim("C3_h_ant_mm", 11.4, 1.0, 9.5, 13.5, _SUB),
    Dim("C4_h_ant_mm", 10.9, 1.0, 9.0, 13.0, _SUB),
    Dim("C5_h_ant_mm", 10.2, 1.0, 8.5, 12.0, _SUB + " (C5 smallest)"),
    Dim("C6_h_ant_mm", 10.5, 1.0, 8.7, 12.5, _SUB),
    Dim("C7_h_ant_mm", 11.2, 1.0, 9.3, 13.2, _SUB),
    Dim("T1_h_ant_mm", 13.5, 1.0, 11.5, 15.5, "estimate (T1 taller than C7)"),
    Dim("C3_h_post_mm", 12.0, 1.0, 10.0, 14.0, _SUB + " (C3 largest, about 12.0)"),
    Dim("C4_h_post_mm", 11.3, 1.0, 9.5, 13.3, _SUB),
    Dim("C5_h_post_mm", 10.7, 1.0, 9.0, 12.5, _SUB + " (C5 about 10.7)"),
    Dim("C6_h_post_mm", 11.0, 1.0, 9.2, 13.0, _SUB),
    Dim("C7_h_post_mm", 11.6, 1.0, 9.8, 13.6, _SUB),
    Dim("T1_h_post_mm", 14.0, 1.0, 12.0, 16.0, "estimate"),
    Dim("C3_depth_mm", 14.7, 0.9, 13.0, 16.5, _DEPTH),
    Dim("C4_depth_mm", 15.0, 0.9, 13.3, 16.8, _DEPTH),
    Dim("C5_depth_mm", 15.3, 0.9, 13.6, 17.1, _DEPTH),
    Dim("C6_depth_mm", 15.6, 0.9, 13.9, 17.4, _DEPTH),
    Dim("C7_depth_mm", 15.9, 0.9, 14.2, 17.7, _DEPTH + " (C7 deepest)"),
    Dim("T1_depth_mm", 17.0, 1.0, 15.0, 19.0, "estimate"),
    Dim("disc_chord_mm", 3.9, 0.4, 3.0, 4.9, _DISC + ": anterior 3.4–4.1, middle 5.3–5.8"),
    Dim("endplate_concavity_inf_mm", 1.1, 0.3, 0.5, 1.7, "estimate (inferior endplates are the concave ones)"),
    Dim("endplate_concavity_sup_mm", 0.4, 0.15, 0.1, 0.8, "estimate"),
    Dim("adi_mm", 1.9, 0.5, 0.8, 3.0, "standard radiology reference: adult ADI <= 3 mm"),
    Dim("C1_ant_arch_h_mm", 10.0, 1.0, 8.0, 12.0, "estimate (anterior tubercle of the atlas)"),
    Dim("C2_spinous_mm", 20.0, 2.5, 15.0, 25.0, "estimate"),
    Dim("C3_spinous_mm", 13.0, 2.0, 9.0, 17.0, "estimate"),
    Dim("C4_spinous_mm", 13.0, 2.0, 9.0, 17.0, "estimate"),
    Dim("C5_spinous_mm", 15.0, 2.0, 11.0, 19.0, "estimate"),
    Dim("C6_spinous_mm", 19.0, 2.5, 14.0, 24.0, "estimate"),
    Dim("C7_spinous_mm", 28.0, 3.0, 22.0, 34.0, "standard anatomy: vertebra prominens, the longest"),
    Dim("T1_spinous_mm", 25.0, 3.0, 19.0, 31.0, "estimate"),
    Dim("prevertebral_C2_C4_mm", 4.5, 0.8, 3.0, 7.0, "standard radiology reference (< 7 mm at C2)"),
    Dim("prevertebral_C5_C7_mm", 13.0, 2.5, 9.0, 20.0, "standard radiology reference (< 22 mm at C6)"),
)

_BY_KEY = {d.key: d for d in MORPHOMETRY}


def dim(key: str) -> Dim:
    """The row ``key`` of :data:`MORPHOMETRY`; ``KeyError`` names the bad key."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown morphometry key {key!r}") from None


def sample(rng: np.random.Generator, key: str, scale: float = 1.0, n: int | None = None, sd_factor: float = 1.0) -> np.ndarray | float:
    """Draw ``key`` (truncated normal by clipping, times a subject ``scale``)."""
    d = _BY_KEY[key]
    v = np.clip(rng.normal(d.mean, d.sd * sd_factor, n), d.lo, d.hi) * scale
    return v if n is not None else float(v)


def markdown_table() -> str:
    """The table as Markdown (the one printed in docs/phantoms.md)."""
    rows = ["| quantity | mean | SD | range | source |", "|---|---|---|---|---|"]
    for d in MORPHOMETRY:
        rows.append(f"| `{d.key}` | {d.mean:g} | {d.sd:g} | {d.lo:g}–{d.hi:g} | {d.source} |")
    return "\n".join(rows)


__all__ = ["Dim", "MORPHOMETRY", "dim", "markdown_table", "sample"]
