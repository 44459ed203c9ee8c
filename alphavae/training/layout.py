"""GroupNorm that keeps the channels_last layout, so that compiled convolutions get the layout they want.

On a GPU, PyTorch's native group norm returns a contiguous (NCHW) tensor whatever its input's layout
(pytorch#111824), and torch.compile records the same strides (compiled parts return them; fallback kernels such as
``convolution_backward`` are held to them). In a channels_last network a convolution after a GroupNorm (both in
each ResNet block of the VAE) can then receive NCHW activations with an NHWC weight and copy them into NHWC first:
an activation-sized copy per convolution (benchmarks/NOTES.md, "Stop 19").
:class:`LayoutKeepingGroupNorm` computes the same normalisation from views and reductions, whose outputs keep
their input's strides, so under torch.compile it becomes fused kernels that write channels_last directly. Eager,
it is slower than the native kernel: :func:`alphavae.training.step.optimise_networks` applies it to compiled VAEs
only. Measured on one H100 (NOTES "Stop 21", SD size, batch 16, compiled and CUDA-graphed): the step took 300.1 ms
with it and 308.7 ms without (+2.9 % images/s); with it, native elementwise kernels are 3 ms of the step (an H200's
profile without it had shown 48 ms of them, stop 18).
"""

from __future__ import annotations

import torch
from torch import nn


class LayoutKeepingGroupNorm(nn.GroupNorm):
    """:class:`torch.nn.GroupNorm` (same parameters, same state-dict keys) whose output keeps the input's layout.

    Computed in fp32; returned in fp32 under autocast (as CUDA's autocast runs group norm), else in the input's dtype.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        groups = x.float().unflatten(1, (self.num_groups, c // self.num_groups))
        var, mean = torch.var_mean(groups, dim=tuple(range(2, groups.ndim)), correction=0, keepdim=True)
        y = ((groups - mean) * torch.rsqrt(var + self.eps)).flatten(1, 2)
        if self.affine:
            shape = (1, c) + (1,) * (x.ndim - 2)
            y = y * self.weight.float().view(shape) + self.bias.float().view(shape)
        return y if torch.is_autocast_enabled(x.device.type) else y.to(x.dtype)


def channels_last_input(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook: a batched image input in channels_last (a no-op when it already is)."""
    x = args[0]
    return (x.contiguous(memory_format=torch.channels_last), *args[1:]) if x.ndim == 4 else args


def keep_channels_last(network: nn.Module) -> int:
    """Keep ``network``'s activations channels_last, in place: every :class:`torch.nn.GroupNorm` becomes a
    :class:`LayoutKeepingGroupNorm` (the same module object, so its parameters, hooks and a pending
    ``module.compile()`` stay), and every 1×1 convolution converts its input (diffusers' ResNet blocks call
    ``.contiguous()`` before the shortcut convolution, and a 1×1 weight is both layouts at once, so its output
    would follow the NCHW input). Returns how many modules changed (0 the second time). Call before the
    network's first compiled call: a module already traced keeps what was traced."""
    changed = 0
    for child in network.modules():
        if type(child) is nn.GroupNorm:
            child.__class__ = LayoutKeepingGroupNorm
            changed += 1
        elif (isinstance(child, nn.Conv2d) and child.kernel_size == (1, 1)
              and channels_last_input not in child._forward_pre_hooks.values()):
            child.register_forward_pre_hook(channels_last_input)
            changed += 1
    return changed
