"""``import cervisag_edge`` needs only the runtime dependencies."""
from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "matplotlib", "highdicom", "tensorrt", "cuda", "modelopt", "scipy", "onnx", "cupy", "ray")


def test_import_does_not_pull_heavy_modules() -> None:
    code = (
        "import sys, cervisag_edge\n"
        "from cervisag_edge import Measurer, compute_parameters, LANDMARK_NAMES\n"
        "import cervisag_edge.cli.main as m; m.build_parser()\n"
        f"heavy = [h for h in {HEAVY!r} if h in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_import_works_with_heavy_modules_blocked() -> None:
    """Simulate a runtime-only install: make every heavy import fail, then use the API."""
    code = (
        "import sys\n"
        f"for h in {HEAVY!r}: sys.modules[h] = None\n"
        "import numpy as np, cervisag_edge\n"
        "from cervisag_edge import Measurer\n"
        "m = Measurer(threads=1)\n"
        "r = m.measure_array(np.random.default_rng(0).random((300, 240)).astype(np.float32), (0.2, 0.2))\n"
        "print(len(r.landmarks), cervisag_edge.__version__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["34", cervisag_edge_version()]


def cervisag_edge_version() -> str:
    import cervisag_edge

    return cervisag_edge.__version__
