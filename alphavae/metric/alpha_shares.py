"""How much of an image's alpha is transparent, soft or opaque: the crispness of generated and decoded alpha.

Clip art is mostly fully transparent or fully opaque, with soft alpha only along antialiased edges (about 5 % of
the pixels of the held-out split). A decoder or generator that leaves haze shows it here first: its soft share
rises above the data's (method.md §4; the thresholds are ``TRANSPARENT`` and ``OPAQUE``).
"""

from __future__ import annotations

import torch

#: α below this is "transparent", above ``OPAQUE`` "opaque", in between "soft".
TRANSPARENT, OPAQUE = 0.01, 0.99


def alpha_statistics(rgba: torch.Tensor, transparent: float = TRANSPARENT, opaque: float = OPAQUE) -> dict[str, float]:
    """Shares of pixels (over all images) with α < ``transparent``, in between (soft), and α > ``opaque``."""
    alpha = rgba[:, 3].float()
    t = (alpha < transparent).float().mean().item()
    o = (alpha > opaque).float().mean().item()
    return {"transparent": t, "soft": 1.0 - t - o, "opaque": o}
