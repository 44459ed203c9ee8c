"""GroupNorm that keeps the channels_last layout, so that compiled convolutions get the layout they want.

On a GPU, PyTorch's native group norm returns a contiguous (NCHW) tensor whatever its input's layout
(pytorch#111824), and torch.compile records the same strides (compiled parts return them; fallback kernels such as
``convolution_backward`` are held to them). In a channels_last network a convolution after a GroupNorm (both in
each ResNet block of the VAE) can then receive NCHW activations with an NHWC weight and copy them into NHWC first:
an activation-sized copy per convolution (benchmarks/NOTES.md, "Stop 19").
:class:`LayoutKeepingGroupNorm` computes the same normalisation from per-channel reductions, whose outputs keep
their input's strides, so under torch.compile it becomes fused kernels that write channels_last directly. Eager,
it is slower than the native kernel: :func:`alphavae.training.step.optimise_networks` applies it to compiled VAEs
only. Measured on one H100 (SD size, batch 16, compiled and CUDA-graphed; benchmarks/NOTES.md): in stop 21, 308.7 ms
per step with PyTorch's group norm against 300.1 ms with a layout-keeping one that reduced each group directly; in
stop 22, in one call, that version 301.9 ms against **235.1 ms** with per-channel reductions (68.1 images/s, 35.5 %
MFU): a group of a channels_last tensor is a few channels strided by C, which a reduction reads badly.
"""

from __future__ import annotations

import torch
from torch import nn


class LayoutKeepingGroupNorm(nn.GroupNorm):
    """:class:`torch.nn.GroupNorm` (same parameters, same state-dict keys) whose output keeps the input's layout.

    The statistics are reduced per channel first (over H·W: in channels_last memory every load reads whole rows
    of channels), then combined per group by the law of total variance (a group's channels have equal sizes):
    Var_g = mean_c(Var_c) + mean_c((μ_c − μ_g)²). Reducing a group directly, a channels_last tensor is read 4 to
    16 channels at a time with a stride of C. The output is ``x·a + b`` with ``a = γ/σ_g`` and ``b = β − μ_g·a``,
    the fused parameters of PyTorch's CUDA kernel (``ComputeFusedParamsCUDAKernel``), so it rounds as that kernel
    does: a few fp32 ulps of ``x·a`` (3e-4 where the mean is 2,000 times the spread, against fp64). Centring first,
    ``(x − μ)·a + β``, rounds less there (9e-5) but made the compiled SD step 7 % slower (251.1 against 233.7 ms,
    one H100, benchmarks/NOTES.md "Stop 23"). Computed in fp32; returned in fp32 under autocast (as CUDA's autocast runs
    group norm), else in the input's dtype.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, g = x.shape[1], self.num_groups
        xf = x.float()
        spatial = tuple(range(2, x.ndim))
        var_c, mean_c = torch.var_mean(xf if spatial else xf.unsqueeze(-1), dim=spatial or (2,), correction=0,
                                       keepdim=True)
        per_group = (g, c // g)
        mean_c, var_c = mean_c.unflatten(1, per_group), var_c.unflatten(1, per_group)
        mean_g = mean_c.mean(2, keepdim=True)
        var_g = (var_c + (mean_c - mean_g).square()).mean(2, keepdim=True)
        ones = (1,) * len(spatial)  # per image and channel: (N, C, 1, …)
        mean = mean_g.expand_as(mean_c).reshape(x.shape[0], c, *ones)
        scale = torch.rsqrt(var_g + self.eps).expand_as(mean_c).reshape(x.shape[0], c, *ones)
        if self.affine:
            scale = scale * self.weight.float().view(1, c, *ones)
        shift = -mean * scale + (self.bias.float().view(1, c, *ones) if self.affine else 0)
        y = xf * scale + shift  # PyTorch's CUDA kernel applies these fused parameters; x − μ first cost 7 % of a step
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
