"""Few-step rectified flow (Liu et al. 2022; minRF style).

Convention: x_t = (1 - t) * x_0 + t * eps, t in [0, 1]; the model predicts the
velocity v = eps - x_0 (or x_0 itself, turned into v = (x_t - x_0) / t, which
makes each Euler step a DDIM step towards the predicted frame), and sampling integrates dx/dt = v from t = 1 (noise)
to t = 0 (data) with K Euler steps (K = 1..4 at play time). The context pass
that writes a finished frame's K/V sees the frame at a small noise level t_c
(0 by default), the same augmentation as in training.
"""

from __future__ import annotations

from typing import Callable

import torch


def timesteps(steps: int, device=None) -> torch.Tensor:
    """[steps + 1] times from 1 down to 0."""
    return torch.linspace(1.0, 0.0, steps + 1, device=device)


def add_noise(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t for per-frame t broadcast over the trailing token dims. x0, eps [B, F, N, C]; t [B, F]."""
    t = t[..., None, None]
    return (1 - t) * x0 + t * eps


def velocity_target(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return eps - x0


def to_velocity(pred: torch.Tensor, x_t: torch.Tensor, t, kind: str) -> torch.Tensor:
    """The DiT's prediction as a velocity: kind 'velocity' is one already; an x0 prediction
    gives v = (x_t - x0) / t (t >= 1/64 whenever the sampler asks)."""
    if kind == "velocity":
        return pred
    if isinstance(t, torch.Tensor):
        t = t.clamp_min(1e-4)[..., None, None]
    else:
        t = max(float(t), 1e-4)
    return (x_t - pred) / t


def target(kind: str, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The training target of a prediction kind."""
    return x0 if kind == "x0" else velocity_target(x0, eps)


def guide(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: the unconditional velocity pushed `scale` times along the
    prompt's direction (scale 1 gives v_cond back). scale: a float, or one per world [B, 1, 1, 1]."""
    return v_uncond + scale * (v_cond - v_uncond)


def sample(velocity: Callable[[torch.Tensor, float], torch.Tensor], noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Euler integration from t=1 to t=0; velocity(x_t, t) -> v. Returns x_0."""
    x = noise
    ts = timesteps(steps).tolist()  # host floats: no device sync inside the loop
    for t, t_next in zip(ts[:-1], ts[1:]):
        x = x + (t_next - t) * velocity(x, t)
    return x
