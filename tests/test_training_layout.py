"""Channels_last activations (``alphavae.training.layout``): the same numbers, and every convolution's input in
channels_last as a GPU would lay it out.

The layout test traces a VAE with fake CUDA tensors (``FakeTensorMode``: the strides CUDA kernels give, no GPU),
forward only: with PyTorch's group norm most convolutions get NCHW inputs (each a copy on a GPU); after
:func:`keep_channels_last` none does.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.models.upsampling import Upsample2D
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode

from alphavae.training.layout import LayoutKeepingGroupNorm, keep_channels_last
from alphavae.training.upsampling import BroadcastUpsample2D

CL = torch.channels_last


def small_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
                         latent_channels=4, norm_num_groups=4, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2)


@pytest.mark.parametrize("affine", [True, False])
def test_the_layout_keeping_group_norm_computes_group_norm(affine):
    torch.manual_seed(0)
    native = nn.GroupNorm(4, 16, affine=affine)
    if affine:
        nn.init.normal_(native.weight), nn.init.normal_(native.bias)
    ours = LayoutKeepingGroupNorm(4, 16, affine=False)
    ours.affine, ours.weight, ours.bias = native.affine, native.weight, native.bias
    x = (torch.randn(3, 16, 5, 6) * 3 + 1).contiguous(memory_format=CL).requires_grad_(True)
    a, b = native(x), ours(x)
    assert b.is_contiguous(memory_format=CL)
    assert torch.allclose(b, a, atol=1e-5)
    grads = [torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(), x)[0] for y in (a, b)]
    assert torch.allclose(grads[1], grads[0], atol=1e-5)
    assert ours(x.bfloat16()).dtype == torch.bfloat16  # outside autocast: the input's dtype, as PyTorch's
    with torch.autocast("cpu", dtype=torch.bfloat16):  # under autocast fp32, as CUDA's autocast runs group norm
        assert ours(x.bfloat16()).dtype == torch.float32


@pytest.mark.parametrize("shape", [(3, 16), (3, 16, 7), (2, 16, 3, 4, 5), (2, 16, 1, 1)])
def test_the_layout_keeping_group_norm_takes_what_group_norm_takes(shape):
    """Any number of spatial dimensions, none included (a drop-in :class:`torch.nn.GroupNorm`), against fp64."""
    torch.manual_seed(0)
    exact = nn.GroupNorm(4, 16).double()
    nn.init.normal_(exact.weight), nn.init.normal_(exact.bias)
    ours = LayoutKeepingGroupNorm(4, 16)
    ours.load_state_dict({key: value.float() for key, value in exact.state_dict().items()})
    x = torch.randn(*shape) * 3 + 1
    assert torch.allclose(ours(x).double(), exact(x.double()), atol=1e-5)


def test_the_layout_keeping_group_norm_is_stable_far_from_zero():
    """Per-channel statistics combined by the law of total variance, not E[x²] − E[x]²: activations with a mean
    two thousand times their spread normalise as fp64 does (the cancelling formula loses them in fp32; so does
    PyTorch 2.14's own CPU kernel on channels_last input, off by hundreds here). The output rounds as PyTorch's
    CUDA kernel's ``x·a + b`` does: within a few fp32 ulps of ``x·a`` ≈ 2,000."""
    torch.manual_seed(0)
    x = (torch.randn(2, 16, 9, 7) * 0.5 + 1000).contiguous(memory_format=CL)
    exact = nn.functional.group_norm(x.double(), 4).float()
    assert torch.allclose(LayoutKeepingGroupNorm(4, 16, affine=False)(x), exact, atol=5e-4)
    groups = x.unflatten(1, (4, 4))
    cancelling = groups.square().mean((2, 3, 4), keepdim=True) - groups.mean((2, 3, 4), keepdim=True).square()
    assert not torch.allclose(cancelling, groups.var((2, 3, 4), correction=0, keepdim=True), rtol=1e-2)  # it would fail


def test_keep_channels_last_changes_no_weight_and_no_output():
    vae = small_vae()
    x = torch.rand(2, 4, 32, 32) * 2 - 1
    with torch.no_grad():
        before_state = {k: v.clone() for k, v in vae.state_dict().items()}
        before = vae.decode(vae.encode(x).latent_dist.mode()).sample
        vae.decoder.conv_norm_out.compile()  # as decoder_parts compiles it: the pending compile must stay
        assert keep_channels_last(vae) > 0
        assert keep_channels_last(vae) == 0  # nothing twice
        assert vae.decoder.conv_norm_out._compiled_call_impl is not None
        vae.decoder.conv_norm_out._compiled_call_impl = None  # this CPU test runs it eager
        after = vae.decode(vae.encode(x.contiguous(memory_format=CL)).latent_dist.mode()).sample
    assert any(isinstance(m, LayoutKeepingGroupNorm) for m in vae.modules())
    assert vae.state_dict().keys() == before_state.keys()
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in before_state.items())
    assert torch.allclose(after, before, atol=1e-5)


def conv_input_layouts(vae: AutoencoderKL, batch: int = 2, size: int = 32) -> dict[str, bool]:
    """Whether each convolution's input is channels_last in a forward traced as on a GPU (fp32: autocast needs a
    real GPU, and the layouts do not depend on the dtype)."""
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    cuda = torch.device("cuda")
    for module in vae.modules():
        for name, p in list(module._parameters.items()):
            if p is not None:
                meta = p.detach().to("meta", memory_format=CL if p.ndim == 4 else torch.preserve_format)
                module._parameters[name] = nn.Parameter(FakeTensor(mode, meta, cuda), requires_grad=False)
    seen: dict[str, bool] = {}
    names = {m: n for n, m in vae.named_modules()}
    for module in vae.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_pre_hook(lambda m, args: seen.update({names[m]: args[0].is_contiguous(memory_format=CL)}))
    with mode, torch.no_grad():
        x = FakeTensor(mode, torch.empty(batch, 4, size, size, device="meta", memory_format=CL), cuda)
        vae.decode(vae.encode(x).latent_dist.mode())
    return seen


def test_every_convolution_gets_channels_last_input_on_a_gpu_after_keep_channels_last():
    native = conv_input_layouts(small_vae())
    assert sum(not cl for cl in native.values()) > len(native) // 2  # what CUDA's group norm does to them
    kept = small_vae()
    keep_channels_last(kept)
    layouts = conv_input_layouts(kept)
    assert layouts.keys() == native.keys()
    assert [name for name, cl in layouts.items() if not cl] == []


def test_compiled_vaes_keep_channels_last_and_the_others_do_not():
    """``optimise_networks`` applies the layout with ``torch.compile`` (to the trainable and the reference VAE) and
    the broadcast upsampling to the trainable decoder, and leaves an eager run's networks as they are (the
    layout-keeping group norm is slower eager)."""
    from types import SimpleNamespace

    from alphavae.training.step import optimise_networks

    for compiled in (True, False):
        model = small_vae()
        objective = SimpleNamespace(reference_vae=small_vae(), lpips_model=None, discriminator=None)
        shared_reference = objective.reference_vae  # what a loader's cache would hand to every run
        optimise_networks(model, objective, compile_networks=compiled, frozen_dtype=None)
        assert {type(m) for m in shared_reference.modules() if isinstance(m, nn.GroupNorm)} == {nn.GroupNorm}
        for vae in (model, objective.reference_vae):
            kinds = {type(m) for m in vae.modules() if isinstance(m, nn.GroupNorm)}
            assert kinds == ({LayoutKeepingGroupNorm} if compiled else {nn.GroupNorm})
        upsamplers = {type(m) for m in model.modules() if isinstance(m, Upsample2D)}
        assert upsamplers == ({BroadcastUpsample2D} if compiled else {Upsample2D})  # the decoder's, compiled only


def test_the_trainers_reference_copy_only_encodes():
    """``optimise_networks`` keeps its own copy of the reference VAE without the decoder (unused by the reference
    KL: 49.5 M parameters at SD size) and it encodes as the shared original does; the original keeps its decoder."""
    from types import SimpleNamespace

    from alphavae.training.step import optimise_networks

    objective = SimpleNamespace(reference_vae=small_vae(), lpips_model=None, discriminator=None)
    shared = objective.reference_vae
    optimise_networks(small_vae(), objective, compile_networks=False, frozen_dtype=torch.float64)
    copy = objective.reference_vae
    assert copy.decoder is None and copy.post_quant_conv is None and shared.decoder is not None
    assert sum(p.numel() for p in copy.parameters()) == sum(p.numel() for n, p in shared.named_parameters()
                                                             if not n.startswith(("decoder.", "post_quant_conv.")))
    x = torch.rand(2, 4, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(copy.encode(x.double()).latent_dist.mean, shared.encode(x).latent_dist.mean.double(),
                              atol=1e-5)
