"""Nearest 2× upsampling as a broadcast, for compiled VAE decoders.

diffusers' ``Upsample2D`` calls ``F.interpolate(x, scale_factor=2.0, mode="nearest")``, whose backward Inductor makes
a scatter-add (``index_put`` with accumulate): 0.69 ms of the 26.6-ms embedded step at batch 8 (26.3 ms of kernels) on
one H100 (benchmarks/NOTES.md, stop 24). Written as a broadcast, the same upsampling has a sum over each 2×2 block as
its backward; the values are equal, the gradients equal up to the order of the four-term sums. On one H100, stop 25
(``benchmarks/step_ab.py``, embedded, batch 8): 312.8 images/s against 301.1 with ``interpolate``.
:func:`alphavae.training.step.optimise_networks` applies it to compiled decoders only. Unlike diffusers, it keeps a
channels_last input channels_last at batch ≥ 64 too (diffusers makes such inputs contiguous for a bug of PyTorch's
NHWC ``interpolate``, which this does not call)."""

from __future__ import annotations

import torch
from diffusers.models.upsampling import Upsample2D
from torch import nn


def upsample_nearest2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest 2× upsampling of ``(N, C, H, W)`` as a broadcast, in ``x``'s memory layout (channels_last stays so)."""
    n, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last):
        nhwc = x.permute(0, 2, 3, 1)[:, :, None, :, None, :].expand(n, h, 2, w, 2, c)
        return nhwc.reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
    return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


class BroadcastUpsample2D(Upsample2D):
    """diffusers' :class:`Upsample2D` (same parameters and state-dict keys) whose plain nearest 2× upsampling is
    :func:`upsample_nearest2x`; any other use (an output size, a norm, a transposed convolution) is the parent's."""

    def forward(self, hidden_states: torch.Tensor, output_size: int | None = None, *args, **kwargs) -> torch.Tensor:
        plain = output_size is None and not args and not kwargs and self.interpolate
        if not plain or self.norm is not None or self.use_conv_transpose:
            return super().forward(hidden_states, output_size, *args, **kwargs)
        hidden_states = upsample_nearest2x(hidden_states)
        if self.use_conv:
            hidden_states = self.conv(hidden_states) if self.name == "conv" else self.Conv2d_0(hidden_states)
        return hidden_states


def broadcast_upsampling(network: nn.Module) -> int:
    """Make every :class:`Upsample2D` of ``network`` a :class:`BroadcastUpsample2D`, in place (the same module objects,
    so a pending ``module.compile()`` stays). Returns how many changed (0 the second time). Call before the first
    compiled call: a module already traced keeps what was traced."""
    changed = 0
    for child in network.modules():
        if type(child) is Upsample2D:
            child.__class__ = BroadcastUpsample2D
            changed += 1
    return changed
