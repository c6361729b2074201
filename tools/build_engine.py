#!/usr/bin/env python3
"""Build a TensorRT plan from a model variant's ONNX: ``tools/build_engine.py engines/cervisag_unet.int8-trt.json``.

Strongly typed network (precision comes from the ONNX graph: FP16 casts from AutoCast, INT8 from
Q/DQ), an optimisation profile for batch 1..``--max-batch``, a workspace limit, a persisted
timing cache, and optional ``--version-compatible`` / ``--hardware-compat ampere+``. Writes
``<model>.<variant>.plan`` and its manifest ``<model>.<variant>.plan.json`` next to the ONNX.
Works with TensorRT 10.x (10.12+) and 11.x. Without TensorRT or a GPU it exits with code 2.

Extra: ``pip install 'cervisag-edge[tensorrt]'`` (the builder needs the full ``tensorrt`` wheel).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import importlib.util
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cervisag_edge.engine.backends.tensorrt import PLAN_FORMAT  # noqa: E402
from cervisag_edge.engine.manifest import ModelManifest, load_manifest, sha256_file  # noqa: E402

logger = logging.getLogger("build_engine")
EXIT_MISSING = 2
HARDWARE_COMPAT = ("none", "ampere+")


@dataclass(frozen=True)
class BuildOptions:
    """What the builder is asked to do; recorded verbatim in the plan manifest."""

    max_batch: int = 4
    opt_batch: int = 1
    workspace_mib: int = 2048
    version_compatible: bool = False
    hardware_compat: str = "none"
    optimization_level: int = 3
    timing_cache: str = ""
    tf32: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_batch": self.max_batch, "opt_batch": self.opt_batch, "workspace_mib": self.workspace_mib,
            "version_compatible": self.version_compatible, "hardware_compat": self.hardware_compat,
            "optimization_level": self.optimization_level, "timing_cache": self.timing_cache,
            "tf32": self.tf32, "strongly_typed": True,
        }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", help="ONNX manifest of the variant (e.g. engines/cervisag_unet.fp16.json)")
    p.add_argument("--max-batch", type=int, default=4, help="largest batch of the optimisation profile (default 4)")
    p.add_argument("--opt-batch", type=int, default=1, help="batch TensorRT tunes for (default 1)")
    p.add_argument("--workspace-mib", type=int, default=2048, help="workspace memory pool limit in MiB (default 2048)")
    p.add_argument("--timing-cache", default=None, help="timing cache file (default <model>.timing.cache beside the ONNX)")
    p.add_argument("--version-compatible", action="store_true", help="plan loadable by later TensorRT versions and the lean runtime")
    p.add_argument("--hardware-compat", choices=HARDWARE_COMPAT, default="none", help="'ampere+': plan runs on any GPU of compute capability >= 8.0")
    p.add_argument("--optimization-level", type=int, default=3, choices=range(0, 6), help="builder optimisation level 0..5 (default 3)")
    p.add_argument("--no-tf32", action="store_true", help="FP32 layers in full FP32, not TF32 (for parity checks against ONNX Runtime)")
    p.add_argument("--output", default=None, help="plan path (default <model>.<variant>.plan beside the ONNX)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.max_batch < 1:
        p.error(f"--max-batch {args.max_batch} must be >= 1")
    if not 1 <= args.opt_batch <= args.max_batch:
        p.error(f"--opt-batch {args.opt_batch} must lie in 1..--max-batch ({args.max_batch})")
    if args.workspace_mib < 16:
        p.error(f"--workspace-mib {args.workspace_mib} must be >= 16")
    return args


def options_from_args(args: argparse.Namespace, timing_cache: Path) -> BuildOptions:
    return BuildOptions(
        max_batch=args.max_batch, opt_batch=args.opt_batch, workspace_mib=args.workspace_mib,
        version_compatible=bool(args.version_compatible), hardware_compat=args.hardware_compat,
        optimization_level=int(args.optimization_level), timing_cache=timing_cache.name, tf32=not args.no_tf32,
    )


def profile_shapes(input_shape: Sequence[int], max_batch: int, opt_batch: int = 1) -> dict[str, list[int]]:
    """min/opt/max shapes of the optimisation profile for an (N, C, H, W) input with N dynamic (-1) or fixed."""
    if len(input_shape) != 4:
        raise ValueError(f"input_shape {list(input_shape)} is not (N, C, H, W)")
    _, c, h, w = (int(v) for v in input_shape)
    if min(c, h, w) < 1:
        raise ValueError(f"input_shape {list(input_shape)} has a dynamic non-batch dimension; only the batch may be dynamic")
    fixed = int(input_shape[0])
    if fixed > 0 and fixed != max_batch:
        raise ValueError(f"input_shape fixes batch {fixed}; --max-batch {max_batch} needs a dynamic batch (-1)")
    if not 1 <= opt_batch <= max_batch:
        raise ValueError(f"opt batch {opt_batch} outside 1..{max_batch}")
    lo = max_batch if fixed > 0 else 1
    return {"min": [lo, c, h, w], "opt": [max(opt_batch, lo), c, h, w], "max": [max_batch, c, h, w]}


def variant_stem(manifest: ModelManifest) -> str:
    """``cervisag_unet.int8-trt`` for an ONNX file ``cervisag_unet.int8-trt.onnx``."""
    name = manifest.file
    return name[: -len(".onnx")] if name.endswith(".onnx") else Path(name).stem


def plan_paths(manifest: ModelManifest, output: str | None = None, timing_cache: str | None = None) -> tuple[Path, Path, Path]:
    """(plan, plan manifest, timing cache) paths for an ONNX manifest."""
    folder = Path(manifest.path)
    plan = Path(output) if output else folder / f"{variant_stem(manifest)}.plan"
    cache = Path(timing_cache) if timing_cache else folder / f"{manifest.name}.timing.cache"
    return plan, plan.with_name(plan.name + ".json"), cache


def make_plan_manifest(
    onnx_manifest: ModelManifest,
    *,
    plan_path: Path,
    plan_sha256: str,
    trt_version: str,
    trt_module: str,
    gpu_name: str,
    compute_capability: str,
    options: BuildOptions,
    built_at: str | None = None,
) -> ModelManifest:
    """Plan manifest: the ONNX manifest's fields (preprocessing, codec) with the plan's file/sha256.

    The build facts go to ``extra["tensorrt"]`` (fields of ``PLAN_FIELDS``); the ONNX file is
    referenced relative to the plan manifest's folder.
    """
    onnx_path = onnx_manifest.model_path
    try:
        onnx_rel = str(onnx_path.resolve().relative_to(plan_path.resolve().parent))
    except ValueError:
        onnx_rel = str(onnx_path.resolve())
    shape = [int(v) for v in onnx_manifest.input_shape]
    block = {
        "tensorrt_version": str(trt_version),
        "tensorrt_module": trt_module,
        "gpu_name": gpu_name,
        "compute_capability": compute_capability,
        "onnx_file": onnx_rel,
        "onnx_sha256": onnx_manifest.sha256,
        "onnx_precision": onnx_manifest.precision,
        "profile": profile_shapes(shape, options.max_batch, options.opt_batch),
        "build_options": options.to_dict(),
        "built_at": built_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    extra = {k: v for k, v in dict(onnx_manifest.extra).items() if k != "tensorrt"}
    extra["tensorrt"] = block
    return ModelManifest(
        name=onnx_manifest.name, file=plan_path.name, sha256=plan_sha256, precision=onnx_manifest.precision,
        input_name=onnx_manifest.input_name, input_shape=tuple(shape), output_name=onnx_manifest.output_name,
        heatmap_shape=tuple(onnx_manifest.heatmap_shape), heatmap_stride=onnx_manifest.heatmap_stride,
        mean=onnx_manifest.mean, std=onnx_manifest.std, pad_value=onnx_manifest.pad_value, resize=onnx_manifest.resize,
        codec=onnx_manifest.codec, landmark_names=onnx_manifest.landmark_names, format=PLAN_FORMAT,
        base_model=onnx_manifest.base_model or onnx_manifest.file, training=onnx_manifest.training,
        metrics=onnx_manifest.metrics, extra=extra, crop=onnx_manifest.crop, levels=onnx_manifest.levels,
        path=str(plan_path.parent),
    )


def module_present(name: str) -> bool:
    """Whether ``name`` (dotted allowed) can be imported; False, never an exception, when a parent package is missing."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # find_spec("a.b") imports "a": ModuleNotFoundError when it is absent
        return False


def missing_prerequisite() -> str | None:
    """One line naming what is missing to build (TensorRT builder, cuda-python, a GPU), or None."""
    if not module_present("tensorrt"):
        if module_present("tensorrt_lean"):
            return ("only the TensorRT lean runtime (tensorrt_lean) is installed, which cannot build plans; "
                    "install the full 'tensorrt' wheel from NVIDIA's package index on a GPU machine")
        return ("the TensorRT builder is not installed: the full 'tensorrt' wheel's libraries come only from NVIDIA's "
                "package index (pip install tensorrt-cu13 --extra-index-url <NVIDIA's index>), on a machine with an NVIDIA GPU")
    if not module_present("cuda.bindings"):
        return "cuda-python is not installed; pip install 'cervisag-edge[gpu]'"
    from cervisag_edge.engine.resolver import gpu_available

    if not gpu_available():
        return "no CUDA GPU is visible (cudaGetDeviceCount found none); run on a machine with an NVIDIA GPU and driver"
    return None


def parser_errors(parser: Any) -> list[str]:
    """Every error the ONNX parser recorded, one line each (node, code, description)."""
    lines = []
    for i in range(int(parser.num_errors)):
        err = parser.get_error(i)
        node = err.node() if hasattr(err, "node") else -1
        name = err.node_name() if hasattr(err, "node_name") else ""
        lines.append(f"node {node} {name!s}: {err.code()} {err.desc()}".strip())
    return lines


def build_plan(manifest: ModelManifest, options: BuildOptions, cache_path: Path) -> tuple[bytes, Any]:
    """Parse the ONNX, build a strongly typed plan; returns (plan bytes, tensorrt module)."""
    import tensorrt as trt

    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 0
    strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly is not None:  # TensorRT 10.x; 11.x is always strongly typed
        flags |= 1 << int(strongly)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(manifest.model_path)):
        errors = parser_errors(parser)
        raise RuntimeError(f"{manifest.model_path}: ONNX parser reported {len(errors)} error(s): " + " | ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    config.builder_optimization_level = options.optimization_level
    profile = builder.create_optimization_profile()
    shapes = profile_shapes(manifest.input_shape, options.max_batch, options.opt_batch)
    profile.set_shape(manifest.input_name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if not options.tf32 and tf32 is not None:
        config.clear_flag(tf32)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.hardware_compat == "ampere+":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{manifest.model_path}: TensorRT {trt.__version__} failed to build a plan (see the log above)")
    cache_path.write_bytes(memoryview(config.get_timing_cache().serialize()))
    return bytes(memoryview(serialized)), trt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    missing = missing_prerequisite()
    if missing:
        print(f"build_engine: {missing}", file=sys.stderr)
        return EXIT_MISSING
    from cervisag_edge.engine.cuda.memory import device_properties

    manifest = load_manifest(args.manifest)
    plan_path, plan_manifest_path, cache_path = plan_paths(manifest, args.output, args.timing_cache)
    options = options_from_args(args, cache_path)
    plan, trt = build_plan(manifest, options, cache_path)
    plan_path.write_bytes(plan)
    gpu_name, cc, _ = device_properties(0)
    pm = make_plan_manifest(
        manifest, plan_path=plan_path, plan_sha256=sha256_file(plan_path), trt_version=trt.__version__,
        trt_module="tensorrt", gpu_name=gpu_name, compute_capability=cc, options=options,
    )
    if manifest.refine is not None:  # a two-stage manifest: the second stage gets its own plan, named by field refine
        stage = manifest.refine
        stage_plan, _, stage_cache = plan_paths(stage)
        stage_bytes, _ = build_plan(stage, options_from_args(args, stage_cache), stage_cache)
        stage_plan.write_bytes(stage_bytes)
        spm = make_plan_manifest(
            stage, plan_path=stage_plan, plan_sha256=sha256_file(stage_plan), trt_version=trt.__version__,
            trt_module="tensorrt", gpu_name=gpu_name, compute_capability=cc, options=options,
        )
        pm = dataclasses.replace(pm, refine=spm)
        print(f"wrote {stage_plan} ({len(stage_bytes) / 2**20:.1f} MiB), the second stage")
    pm.write(plan_manifest_path)
    print(f"wrote {plan_path} ({len(plan) / 2**20:.1f} MiB) and {plan_manifest_path} [TensorRT {trt.__version__}, {gpu_name}, sm {cc}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
