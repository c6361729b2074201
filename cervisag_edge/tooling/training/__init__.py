"""Training-side code (extra ``[train]``: PyTorch). Never imported by the runtime."""
