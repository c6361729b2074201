"""The landmark network (PyTorch; extra ``[train]``): a compact U-Net-style heatmap regressor.

Runtime side: the torch backend builds it from exported weights; ``training/`` imports it from here.

Shape legend: N batch, K = 34 landmarks, H × W = model input (512 × 512), h × w = H/2 × W/2.

Input (N, 1, H, W) normalised grey image → output (N, K, h, w) heatmaps (stride 2).
Encoder: a stride-2 stem then four stride-2 stages (16 × 16 at the bottom, receptive field
covering the whole cervical spine, which vertebra identity needs); decoder: FPN-style
additive skips (1×1 lateral convs) and nearest upsampling back to stride 2. Only Conv,
BatchNorm (folded at export), ReLU, Add and Resize(nearest): all export to ONNX opset 17 and
run on TensorRT.
"""
from __future__ import annotations

import torch
from torch import nn

DEFAULT_WIDTHS: tuple[int, ...] = (16, 48, 96, 160, 256)


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Block(nn.Module):
    """Two 3×3 conv-BN-ReLU with a residual add when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.a = _conv_bn_relu(cin, cout, stride)
        self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        return self.act(self.b(y) + y)


class LandmarkUNet(nn.Module):
    """Heatmap U-Net. ``widths`` are the channels at strides 2, 4, 8, 16, 32."""

    def __init__(self, num_landmarks: int = 34, widths: tuple[int, ...] = DEFAULT_WIDTHS, out_stride: int = 4,
                 head_width: int = 96) -> None:
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"widths must list 5 stages, got {widths}")
        if out_stride not in (2, 4):
            raise ValueError(f"out_stride must be 2 or 4, got {out_stride}")
        w1, w2, w3, w4, w5 = widths
        self.widths = tuple(widths)
        self.out_stride = out_stride
        self.stem = nn.Sequential(_conv_bn_relu(1, w1, 2), _conv_bn_relu(w1, w1))  # /2
        self.e2 = _Block(w1, w2, 2)  # /4
        self.e3 = _Block(w2, w3, 2)  # /8
        self.e4 = _Block(w3, w4, 2)  # /16
        self.e5 = nn.Sequential(_Block(w4, w5, 2), _conv_bn_relu(w5, w5))  # /32
        self.lat4 = nn.Conv2d(w5, w4, 1)
        self.d4 = _conv_bn_relu(w4, w4)
        self.lat3 = nn.Conv2d(w4, w3, 1)
        self.d3 = _conv_bn_relu(w3, w3)
        self.lat2 = nn.Conv2d(w3, w2, 1)
        self.d2 = _conv_bn_relu(w2, w2)
        if out_stride == 2:
            self.lat1 = nn.Conv2d(w2, w1, 1)
            self.d1 = nn.Sequential(_conv_bn_relu(w1, w1), _conv_bn_relu(w1, w1))
            self.head = nn.Conv2d(w1, num_landmarks, 1)
        else:  # a wide head at stride 4: 34 landmark identities need more than a few channels
            self.d1 = _conv_bn_relu(w2, head_width)
            self.head = nn.Conv2d(head_width, num_landmarks, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.stem(x)
        s2 = self.e2(s1)
        s3 = self.e3(s2)
        s4 = self.e4(s3)
        s5 = self.e5(s4)
        y = self.d4(self.up(self.lat4(s5)) + s4)
        y = self.d3(self.up(self.lat3(y)) + s3)
        y = self.d2(self.up(self.lat2(y)) + s2)
        if self.out_stride == 2:
            y = self.d1(self.up(self.lat1(y)) + s1)
        else:
            y = self.d1(y)
        return self.head(y)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_macs(model: nn.Module, input_hw: tuple[int, int]) -> int:
    """Multiply-accumulates of all convolutions for one (1, 1, H, W) input (hooks, no profiler)."""
    total = [0]

    def hook(mod: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            total[0] += int(out.numel() * k)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, *input_hw))
    finally:
        for h in handles:
            h.remove()
    return total[0]
