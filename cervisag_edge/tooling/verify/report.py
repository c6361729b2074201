"""The ``--report DIR`` output: ``report.md`` plus PNG figures (matplotlib, imported lazily).

Figures: ``error_cdf.png`` (cumulative distribution of radial errors, visible vs hidden),
``bland_altman_<parameter>.png`` (one per parameter), ``landmark_errors.png`` (mean ± SD per
landmark) and ``worst_<k>.png`` (the worst five images: the runtime overlay of the prediction, the
reference as cyan rings, yellow error lines).
Without matplotlib the Markdown is still written and says the plots were left out.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import cv2
import numpy as np

from ...core.landmarks import LANDMARK_NAMES
from .dataset import PARAMETER_KEYS
from .evaluate import ImageRecord, param_arrays, worst_records
from .intervals import report_lines as interval_report_lines

if TYPE_CHECKING:  # pragma: no cover
    from .runner import VerificationOutcome

logger = logging.getLogger(__name__)

PARAMETER_UNITS: dict[str, str] = {
    "borden_mm": "mm",
    "cci_percent": "%",
    "ccl_deg": "°",
    "cobb_c0_c7_deg": "°",
    "cobb_c1_c7_deg": "°",
    "cobb_c2_c7_deg": "°",
}


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x, digits) for x in v) + "]"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    return f"{float(v):.{digits}f}"


def write_report(outcome: "VerificationOutcome", out_dir: str | Path) -> list[Path]:
    """Write ``report.md`` and the figures into ``out_dir``; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = outcome.reference.records
    written: list[Path] = []
    figures: dict[str, list[str]] = {}
    plot_note = ""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
        plot_note = "matplotlib is not installed (pip install 'cervisag-edge[docs]'): the plots were left out."
        logger.warning(plot_note)
    if plt is not None:
        figures["cdf"] = [_error_cdf(plt, records, out / "error_cdf.png")]
        figures["ba"] = _bland_altman(plt, records, out)
        figures["lm"] = [_landmark_bars(plt, outcome.metrics, out / "landmark_errors.png")]
    figures["worst"] = _worst_overlays(records, out)
    for names in figures.values():
        written += [out / n for n in names]
    md = out / "report.md"
    md.write_text(_markdown(outcome, figures, plot_note), encoding="utf-8")
    return [md] + written


# ------------------------------------------------------------------------------ markdown
def _markdown(outcome: "VerificationOutcome", figures: Mapping[str, list[str]], plot_note: str) -> str:
    m = outcome.metrics
    th = m.get("thresholds", {})
    model = m.get("model", {})
    lines = [
        "# Verification report",
        "",
        f"**Result: {'PASSED' if outcome.passed else 'FAILED'}** against thresholds "
        f"`{th.get('name')}` version {th.get('version')}.",
        "",
        f"Model `{model.get('id')}` on backend `{m.get('backend')}`, precision `{m.get('precision')}`; "
        f"{m['n_images']} images, {m['n_failed']} failed.",
        "",
    ]
    if plot_note:
        lines += [f"> {plot_note}", ""]
    if outcome.failures:
        lines += ["## Failures", ""] + [f"- {f}" for f in outcome.failures] + [""]
    lines += ["## Thresholds", "", "| metric | required | actual | |", "|---|---|---|---|"]
    for c in th.get("checks", []):
        req = f"{c['op']} {c['value']:g}" + (f" ± {c['tolerance']:g}" if c["op"] == "==" else "")
        lines.append(f"| `{c['metric']}` | {req} | {_fmt(c['actual'])} | {'ok' if c['passed'] else '**FAIL**'} |")
    lines += ["", "## Landmarks (mm)", "", "| set | n | missed | MRE | SD | median | P95 | max | SDR 2 / 2.5 / 3 / 4 mm (%) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, s in (("visible (v=2), scored", m["visible"]), ("hidden (v=1)", m["hidden"]), ("all labelled", m["all_labelled"])):
        sdr = " / ".join(_fmt(v, 2) for v in s["sdr_percent"].values())
        lines.append(f"| {name} | {s['n']} | {s['n_missed']} | {_fmt(s['mean_mm'])} | {_fmt(s['sd_mm'])} | "
                     f"{_fmt(s['median_mm'])} | {_fmt(s['p95_mm'])} | {_fmt(s['max_mm'])} | {sdr} |")
    lines += ["", "## Parameters", "", "| parameter | n | MAE | SD | SMAPE % | bias | 95 % LoA | ICC(2,1) [95 % CI] |",
              "|---|---|---|---|---|---|---|---|"]
    for k, p in m["parameters"].items():
        lines.append(f"| {k} | {p['n']} | {_fmt(p['mae'])} | {_fmt(p['sd'])} | {_fmt(p['smape'], 2)} | "
                     f"{_fmt(p['bias'])} | {_fmt(p['loa'])} | {_fmt(p['icc'])} {_fmt(p['icc_ci95'])} |")
    lines += ["", f"Pooled ICC over the six parameters (z-scored by the reference): {_fmt(m['icc_pooled'], 4)} "
              f"{_fmt(m['icc_pooled_ci95'], 4)}", ""]
    lines += _framing_lines(m)
    lines += interval_report_lines(m)  # issue 14: 95 % intervals, estimated parameters
    if m.get("comparisons"):
        lines += ["## Variants against FP32", "", "| variant | status | shift mean / max (mm) | shift mean / max (px) | "
                  "ΔMRE mm | worst image | |", "|---|---|---|---|---|---|---|"]
        for c in m["comparisons"]:
            if c["status"] == "skipped":
                lines.append(f"| {c['label']} | skipped: {c['reason']} | | | | | |")
                continue
            lines.append(f"| {c['label']} | compared | {_fmt(c['shift_mean_mm'])} / {_fmt(c['shift_max_mm'])} | "
                         f"{_fmt(c['shift_mean_px'])} / {_fmt(c['shift_max_px'])} | {_fmt(c['mre_delta_mm'])} | "
                         f"{c['worst_image']} | {'ok' if c['passed'] else '**FAIL**'} |")
        lines.append("")
    if m.get("failed_images"):
        lines += ["## Failed images", ""] + [f"- `{f['file_name']}`: {f['error']}" for f in m["failed_images"]] + [""]
    if figures.get("cdf"):
        lines += ["## Figures", "", "![error CDF](error_cdf.png)", "", "![per-landmark errors](landmark_errors.png)", ""]
    for name in figures.get("ba", []):
        lines += [f"![Bland–Altman]({name})", ""]
    if figures.get("worst"):
        lines += ["## Worst cases", "", "Prediction as drawn by the runtime overlay (or red dots), reference as cyan rings, error lines yellow, missed landmarks as red crosses.", ""]
        lines += [f"![{n}]({n})" for n in figures["worst"]] + [""]
    lines.append("Not for diagnostic use.")
    return "\n".join(lines) + "\n"


def _framing_lines(m: Mapping[str, Any]) -> list[str]:
    """The "Levels, framing and coverage" section (empty for metrics written before it existed)."""
    if "level_assignment" not in m:
        return []
    la = m["level_assignment"]
    lines = ["## Levels, framing and coverage", "",
             "| metric | value |", "|---|---|",
             f"| vertebrae at the right level (mean corner error < ½ body height) | {_fmt(m.get('level_accuracy_percent'), 2)} % "
             f"({la['n_right']} of {la['n_assessed']}; {la['n_missed']} missed, {la['n_misplaced']} misplaced) |",
             f"| landmarks outside the image reported visible | {m.get('out_of_frame_reported_visible')} of {m.get('n_out_of_frame')} |",
             f"| landmarks inside the image but unexposed (v = 0, under a shutter) reported visible | "
             f"{m.get('unexposed_reported_visible')} of {m.get('n_unexposed')} |",
             "", "| parameter | coverage % | reported / eligible (all its landmarks visible in the reference) | with estimates % |",
             "|---|---|---|---|"]
    for k, p in m["parameters"].items():
        if "coverage_percent" in p:
            lines.append(f"| {k} | {_fmt(p['coverage_percent'], 2)} | {p['n_coverage_reported']} / {p['n_coverage_eligible']} | "
                         f"{_fmt(p.get('coverage_with_estimates_percent'), 2)} |")
    return lines + [""]


# ------------------------------------------------------------------------------ figures
def _error_cdf(plt: Any, records: Sequence[ImageRecord], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ok = [r for r in records if r.ok]
    for label, v, style in (("all labelled", (1, 2), "-"), ("visible", (2,), "--"), ("hidden", (1,), ":")):
        e = np.concatenate([r.errors_mm[np.isin(r.visibility, v)] for r in ok]) if ok else np.zeros(0)
        e = e[~np.isnan(e)]
        if e.size == 0:
            continue
        s = np.sort(e)  # missed landmarks (+inf) stay at the top, never reaching 100 %
        ax.step(s[np.isfinite(s)], 100.0 * np.arange(1, int(np.isfinite(s).sum()) + 1) / s.size, where="post",
                ls=style, label=f"{label} (n={s.size})")
    for r in (2.0, 2.5, 3.0, 4.0):
        ax.axvline(r, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel("radial error (mm)")
    ax.set_ylabel("landmarks within (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    ax.legend(loc="lower right")
    ax.set_title("Landmark error CDF")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def _bland_altman(plt: Any, records: Sequence[ImageRecord], out: Path) -> list[str]:
    pred, ref = param_arrays(records)
    names = []
    for k in PARAMETER_KEYS:
        p, r = pred[k], ref[k]
        keep = np.isfinite(p) & np.isfinite(r)
        p, r = p[keep], r[keep]
        fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
        unit = PARAMETER_UNITS.get(k, "")
        if p.size:
            mean, diff = (p + r) / 2.0, p - r
            bias = diff.mean()
            sd = diff.std(ddof=1) if diff.size > 1 else 0.0
            ax.scatter(mean, diff, s=12, alpha=0.7)
            ax.axhline(bias, color="k", lw=1, label=f"bias {bias:.2f}")
            for y in (bias - 1.96 * sd, bias + 1.96 * sd):
                ax.axhline(y, color="r", ls="--", lw=1)
            ax.legend(loc="upper right", title=f"LoA ±{1.96 * sd:.2f}")
        else:
            ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(f"mean of model and reference ({unit})")
        ax.set_ylabel(f"model − reference ({unit})")
        ax.set_title(f"Bland–Altman: {k} (n={p.size})")
        fig.tight_layout()
        name = f"bland_altman_{k}.png"
        fig.savefig(out / name)
        plt.close(fig)
        names.append(name)
    return names


def _landmark_bars(plt: Any, metrics: Mapping[str, Any], path: Path) -> str:
    per = metrics["per_landmark"]
    mean = np.array([np.nan if per[n]["mean_mm"] is None else per[n]["mean_mm"] for n in LANDMARK_NAMES])
    sd = np.array([0.0 if per[n]["sd_mm"] is None else per[n]["sd_mm"] for n in LANDMARK_NAMES])
    fig, ax = plt.subplots(figsize=(11, 4), dpi=100)
    x = np.arange(len(LANDMARK_NAMES))
    ax.bar(x, np.nan_to_num(mean), yerr=sd, capsize=2, color="tab:blue")
    ax.set_xticks(x, LANDMARK_NAMES, rotation=90, fontsize=7)
    ax.set_ylabel("radial error (mm), mean ± SD")
    ax.set_title("Per-landmark error")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


def _display_image(path: str, spacing_mm: tuple[float, float] | None = None) -> np.ndarray:
    """(H, W) float32 display image in [0, 1]: the runtime's reader, else OpenCV."""
    try:
        from ...io import read_image

        return np.asarray(read_image(path, pixel_spacing_mm=spacing_mm).display, dtype=np.float32)
    except ImportError:
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        img = img.astype(np.float32)
        return (img - img.min()) / max(float(img.max() - img.min()), 1e-6)


def _overlay(rec: ImageRecord) -> np.ndarray:
    """(H', W', 3) uint8 BGR image: the runtime's overlay of the prediction (when
    ``outputs.overlay`` is available) or red prediction dots, plus the reference as cyan rings and
    yellow lines from each reference landmark to its prediction."""
    display = _display_image(rec.path, rec.spacing_mm)
    try:
        from ...outputs.overlay import overlay_layout, render_overlay
    except ImportError:
        render_overlay = None
    if render_overlay is not None and rec.measurement is not None:
        rgb = np.ascontiguousarray(render_overlay(display, rec.measurement))
        layout = overlay_layout(*display.shape)
        to_canvas = layout.to_canvas
        draw_pred = False
        top = layout.image_y0
    else:
        gray = np.clip(display * 255.0, 0, 255).astype(np.uint8)
        rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
        to_canvas = lambda xy: np.asarray(xy, dtype=np.float64)  # noqa: E731 - identity layout
        draw_pred = True
        top = 0
    pred = to_canvas(rec.pred_px)
    ref = to_canvas(rec.ref_px)
    radius = max(2, int(round(max(rgb.shape[:2]) / 300)))
    for p, q, e in zip(pred, ref, rec.errors_mm):
        if np.all(np.isfinite(p)) and np.all(np.isfinite(q)):
            cv2.line(rgb, _pt(p), _pt(q), (230, 230, 0), 1, cv2.LINE_AA)
        if np.all(np.isfinite(q)):
            cv2.circle(rgb, _pt(q), radius + 1, (0, 255, 255), 2, cv2.LINE_AA)
        if draw_pred and np.all(np.isfinite(p)):
            cv2.circle(rgb, _pt(p), radius, (230, 0, 0), -1, cv2.LINE_AA)
        if np.isinf(e):
            cv2.drawMarker(rgb, _pt(q), (230, 0, 0), cv2.MARKER_TILTED_CROSS, 4 * radius, 2)
    finite = rec.errors_mm[np.isfinite(rec.errors_mm)]
    text = Path(rec.file_name).name + (f"  MRE {finite.mean():.2f} mm" if finite.size else "")
    scale = max(0.5, rgb.shape[1] / 1600)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    org = (8, top + th + 8)
    cv2.rectangle(rgb, (4, top + 2), (12 + tw, org[1] + base + 2), (0, 0, 0), -1)
    cv2.putText(rgb, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _pt(p: np.ndarray) -> tuple[int, int]:
    # pixel-centre convention: (x=j, y=i) is the centre of pixel (i, j), which cv2 draws at (j, i)
    return int(round(float(p[0]))), int(round(float(p[1])))


def _worst_overlays(records: Sequence[ImageRecord], out: Path, count: int = 5) -> list[str]:
    names = []
    for k, rec in enumerate(worst_records(records, count), start=1):
        try:
            img = _overlay(rec)
        except Exception as exc:  # a report figure must not hide the metrics
            logger.warning("overlay of %s not drawn: %s", rec.path, exc)
            continue
        name = f"worst_{k}.png"
        if cv2.imwrite(str(out / name), img):
            names.append(name)
    return names
