"""Frame metrics: PSNR and SSIM between uint8 frames (conventions in envs/evaluate/__init__.py)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import PSNR_CAP


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] x 2 (b broadcasts) -> PSNR in dB [...], capped at PSNR_CAP for identical frames."""
    return _per_frame(_psnr, a, b)


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] x 2 (b broadcasts) -> SSIM [...] (Gaussian 11/1.5, valid borders, RGB mean)."""
    return _per_frame(_ssim, a, b)


def _per_frame(fn, a: np.ndarray, b: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Apply fn([N, H, W, 3], [N, H, W, 3]) -> [N] in chunks (bounded memory), keep the leading shape."""
    b = np.broadcast_to(b, a.shape)
    lead, frame = a.shape[:-3], a.shape[-3:]
    a2, b2 = a.reshape(-1, *frame), b.reshape(-1, *frame)
    out = [fn(a2[i:i + chunk], b2[i:i + chunk]) for i in range(0, len(a2), chunk)]
    return (np.concatenate(out) if out else np.zeros(0)).reshape(lead)


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))  # [N]
    with np.errstate(divide="ignore"):
        return np.minimum(10.0 * np.log10(255.0**2 / mse), PSNR_CAP)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()  # [size]


def _ssim(a: np.ndarray, b: np.ndarray, size: int = 11, sigma: float = 1.5) -> np.ndarray:
    H, W = a.shape[1:3]
    if min(H, W) < size:
        raise ValueError(f"SSIM needs frames of at least {size}x{size}, got {H}x{W}")
    x = torch.tensor(a, dtype=torch.float64).permute(0, 3, 1, 2)  # [N, 3, H, W] (a copy: b may be read-only)
    y = torch.tensor(b, dtype=torch.float64).permute(0, 3, 1, 2)
    g = _gaussian_window(size, sigma)
    gh, gv = g.view(1, 1, 1, size).repeat(3, 1, 1, 1), g.view(1, 1, size, 1).repeat(3, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable, per channel, 'valid': [N, 3, H-10, W-10]
        return F.conv2d(F.conv2d(t, gh, groups=3), gv, groups=3)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).numpy()  # [N]


def mean_or_none(values) -> float | None:
    """Mean of finite values as a float, None if there are none (JSON has no NaN)."""
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None
