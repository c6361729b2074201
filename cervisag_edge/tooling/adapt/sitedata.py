"""A site's labelled studies: checked once, split deterministically, hashed for provenance.

The split orders the studies by the sha256 of their ``file_name`` (not by file order, so a
re-export from the annotation tool, or added studies, keep every earlier study on its side far
more often than a shuffle would): the first ``n_test`` go to the held-out *test* split (the
gate), the next ``n_val`` to *validation* (early stopping), the rest to *training*.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...engine.manifest import sha256_file
from ...errors import InputError
from ..training.data import CocoSource, Sample
from ..verify.dataset import VerifyDataset, load_dataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteSplit:
    """File names of each split (schema: disjoint; together every labelled study)."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"n_train": len(self.train), "n_val": len(self.val), "n_test": len(self.test),
                "rule": "studies ordered by sha256(file_name): test first, then validation, the rest training",
                "val": list(self.val), "test": list(self.test)}


def split_order(file_names: Sequence[str]) -> list[str]:
    """``file_names`` in the split's deterministic order (by sha256 of the name)."""
    return sorted(file_names, key=lambda n: (hashlib.sha256(n.encode("utf-8")).hexdigest(), n))


def split_site(file_names: Sequence[str], val_fraction: float, test_fraction: float, *, min_train: int = 1) -> SiteSplit:
    """Deterministic train / validation / test split; ``test_fraction`` 0 leaves no test split
    (the held-out studies then come from elsewhere). Raises :class:`InputError` when too few studies."""
    names = split_order(list(dict.fromkeys(file_names)))
    n = len(names)
    n_test = 0 if test_fraction <= 0 else max(1, round(test_fraction * n))
    n_val = 0 if val_fraction <= 0 else max(1, round(val_fraction * n))
    if n - n_test - n_val < min_train:
        raise InputError(f"{n} labelled studies are too few: {n_test} held out for the gate and {n_val} for validation "
                         f"leave {n - n_test - n_val} for training, expected at least {min_train}")
    return SiteSplit(train=tuple(names[n_test + n_val:]), val=tuple(names[n_test:n_test + n_val]), test=tuple(names[:n_test]))


def subset(dataset: VerifyDataset, file_names: Sequence[str]) -> VerifyDataset:
    """The items of ``dataset`` named in ``file_names`` (in the dataset's order)."""
    keep = set(file_names)
    return replace(dataset, items=tuple(it for it in dataset.items if it.file_name in keep))


def load_site(folder: str | Path) -> VerifyDataset:
    """The site's COCO set, checked (every problem is an :class:`InputError` naming the file)
    and every image file present."""
    ds = load_dataset(folder)
    for it in ds.items:
        if not Path(it.path).is_file():
            raise InputError(f"{Path(folder) / 'annotations.json'}: image {it.file_name!r} (id {it.image_id}) not found at {it.path}")
    return ds


def dataset_provenance(dataset: VerifyDataset) -> dict[str, Any]:
    """sha256 of the annotation file and of the images (the sha256 of the sorted
    ``file_name:sha256`` lines), and the number of studies."""
    root = Path(dataset.root)
    lines = sorted(f"{it.file_name}:{sha256_file(it.path)}" for it in dataset.items)
    return {"annotations_sha256": sha256_file(root / "annotations.json"),
            "images_sha256": hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest(), "n_studies": len(dataset.items)}


class MemorySource:
    """Samples of a COCO set read once (at training resolution) and kept in memory.

    A study that cannot be read raises :class:`InputError` naming the file, before training starts."""

    def __init__(self, folder: str | Path, file_names: Sequence[str], long_side: int) -> None:
        full = CocoSource(folder, long_side)
        wanted = set(file_names)
        idx = [i for i, (im, _, _) in enumerate(full.items) if str(im["file_name"]) in wanted]
        self.samples: list[Sample] = []
        for i in idx:
            try:
                self.samples.append(full[i])
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001 - a reader failure becomes one line naming the file
                raise InputError(f"{Path(folder) / str(full.items[i][0]['file_name'])}: cannot be read for training ({exc})") from None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[int(i)]


class MixedSource:
    """Site samples followed by phantoms (``phantoms`` may be None): one index space."""

    def __init__(self, site: Any, phantoms: Any | None) -> None:
        self.site, self.phantoms = site, phantoms

    def __len__(self) -> int:
        return len(self.site) + (len(self.phantoms) if self.phantoms is not None else 0)

    def __getitem__(self, i: int) -> Sample:
        i = int(i)
        return self.site[i] if i < len(self.site) else self.phantoms[i - len(self.site)]


def phantom_count(n_site: int, share: float) -> int:
    """Phantoms to mix in so that they are ``share`` of the training pool (0 <= share < 1)."""
    if not 0 <= share < 1:
        raise InputError(f"--phantom-share {share}: expected a value in [0, 1)")
    return int(round(n_site * share / (1 - share)))


def display_stats(samples: Sequence[Sample]) -> tuple[float, float]:
    """Mean and SD of the display pixels (in [0, 1]) over the samples."""
    vals = np.concatenate([np.asarray(s.display, dtype=np.float64).ravel()[::7] for s in samples])
    return float(vals.mean()), float(vals.std())
