"""SpecAugment on training windows (never on validation): time and frequency masks."""

from __future__ import annotations

from typing import Any

import torch


def spec_augment(windows: torch.Tensor, fill: torch.Tensor, cfg: Any,
                 generator: torch.Generator, bands: int | None = None) -> torch.Tensor:
    """Time and frequency masks on each window [..., M, W]; masked cells take ``fill`` [M].

    ``fill`` is the band's training mean, so a masked cell is 0 after input normalisation.
    bands: frequency masks fall within the first ``bands`` rows (the mel bands; the
    pitch-class rows after them are not a frequency axis); None = all M rows.
    """
    shape = windows.shape
    x = windows.reshape(-1, shape[-2], shape[-1]).clone()
    n, m, w = x.shape
    fill_ = fill[None, :, None].expand(n, m, w)
    rows = m if bands is None else bands
    for count, widest, size, axis in ((cfg.time_masks, cfg.time_mask_frames, w, 2),
                                      (cfg.freq_masks, cfg.freq_mask_bands, rows, 1)):
        widest = min(widest, size)
        for _ in range(count if widest > 0 else 0):
            width = torch.randint(0, widest + 1, (n,), generator=generator)
            start = (torch.rand(n, generator=generator) * (size - width + 1)).floor()
            pos = torch.arange(w if axis == 2 else m)[None, :]
            hit = (pos >= start[:, None]) & (pos < (start + width)[:, None])  # [n, W or M]
            hit = hit[:, None, :] if axis == 2 else hit[:, :, None]
            x = torch.where(hit, fill_, x)
    return x.reshape(shape)
