"""Adapting the shipped model to a site (``cervisag adapt``, docs/adaptation.md).

Modules: :mod:`.sitedata` (the site's COCO set: checks, deterministic split, provenance hashes,
samples in memory, phantom mixing), :mod:`.gate` (the verification a site model must pass),
:mod:`.labelled` (fine-tuning on corrected studies), :mod:`.unlabelled` (normalisation
statistics, batch-norm statistics and pseudo-label self-training without labels),
:mod:`.model` (base model loading, export of the candidate, manifest sections, model card).
Needs the ``[train]`` extra (PyTorch CPU); the runtime never imports this package.
"""
from __future__ import annotations
