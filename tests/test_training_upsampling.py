"""The decoder's nearest upsampling as a broadcast (alphavae.training.upsampling) computes what ``interpolate`` does,
and a decoder given it decodes as before, through the broadcast. (``optimise_networks`` gives it to compiled decoders
only: tests/test_training_layout.py.)"""

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.models.upsampling import Upsample2D

from alphavae.training.upsampling import BroadcastUpsample2D, broadcast_upsampling, upsample_nearest2x


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_broadcast_upsampling_matches_interpolate_forward_and_backward(layout):
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64).to(memory_format=layout).requires_grad_()
    ours = upsample_nearest2x(x)
    theirs = F.interpolate(x, scale_factor=2.0, mode="nearest")
    assert torch.equal(ours, theirs)
    assert ours.is_contiguous(memory_format=layout)
    g = torch.randn_like(theirs)
    (ours_grad,) = torch.autograd.grad(ours, x, g)
    (theirs_grad,) = torch.autograd.grad(theirs, x, g)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=0, atol=1e-12)


def test_a_decoder_with_broadcast_upsampling_decodes_as_before(monkeypatch):
    from alphavae.training import upsampling
    calls = []
    monkeypatch.setattr(upsampling, "upsample_nearest2x", lambda x: calls.append(tuple(x.shape)) or upsample_nearest2x(x))
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=4, out_channels=4, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                        norm_num_groups=4).double()
    z = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    before = vae.decode(z).sample
    keys = set(vae.state_dict())
    assert broadcast_upsampling(vae.decoder) == 1 and broadcast_upsampling(vae.decoder) == 0
    assert {type(m) for m in vae.modules() if isinstance(m, Upsample2D)} == {BroadcastUpsample2D}
    assert set(vae.state_dict()) == keys
    assert not calls
    torch.testing.assert_close(vae.decode(z).sample, before, rtol=0, atol=1e-12)
    assert calls == [(2, 16, 6, 6)]  # the one upsampler went through the broadcast


def test_other_upsampling_uses_are_the_parents(monkeypatch):
    from alphavae.training import upsampling
    monkeypatch.setattr(upsampling, "upsample_nearest2x", None)  # a call of it would fail
    up = Upsample2D(4, use_conv=False)
    up.__class__ = BroadcastUpsample2D
    x = torch.randn(1, 4, 3, 3)
    assert torch.equal(up(x, output_size=(7, 7)), F.interpolate(x, size=(7, 7), mode="nearest"))
