"""3D rotary position embedding and the temporal-id recipes.

The head dim is split into three groups rotated by the token's (time, height,
width) ids (3D RoPE as in video DiTs). Keys are cached *before* RoPE and
rotated at read time, so a recipe may give a cached frame a different temporal
id at every step.

Recipes (Echo-Infinity, "Unified Relative RoPE"; S sink frames, Fm memory
frames, W window frames incl. the current chunk, F_max = S + Fm + W - 1):

- `unified_relative` (the paper's): sink frame j has id j (0..S-1); the newest
  frame f has id n = min(f, F_max); every other frame j has id n - (f - j)
  (the local window sits immediately below the newest); the memory frames sit
  immediately left of the window span: ids n - W - Fm + 1 .. n - W. Ids are
  bounded and, from frame F_max on, identical at every step: no extrapolation.
  Memory always sits at the same distance from the newest frame, so early on
  (f < F_max) its ids can be negative, which is just a rotation backwards.
- `absolute`: frame j has id j, ids grow without bound; memory left of window.
- `window_relative`: like unified, but the newest frame always has id F_max,
  so the sink frames' distance to the newest frame is fixed from the first
  step on (the sinks "move" with the window instead of keeping their true age).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import ModelConfig


@dataclass(frozen=True)
class TemporalIds:
    """Temporal ids of one step's keys/queries, for tests and inspection."""

    sink: list[int]
    memory: list[int]
    window: list[int]  # cached window frames, oldest -> newest (frames f-W+c+1 .. f-c)
    current: list[int]  # the chunk being generated


class RopeRecipe:
    """Temporal ids as a function of the newest frame index f (tensor ops, no host sync)."""

    def __init__(self, name: str, sink_frames: int, memory_frames: int, window_frames: int):
        if name not in ("unified_relative", "absolute", "window_relative"):
            raise ValueError(f"unknown RoPE recipe {name!r}")
        self.name = name
        self.S, self.Fm, self.W = sink_frames, memory_frames, window_frames
        self.F_max = sink_frames + memory_frames + window_frames - 1

    @property
    def bounded(self) -> bool:
        return self.name != "absolute"

    def id_range(self) -> tuple[int, int]:
        """Smallest and largest id a bounded recipe produces for frames inside its layout."""
        return -(self.W + self.Fm), self.F_max

    def _newest(self, f: torch.Tensor) -> torch.Tensor:
        if self.name == "unified_relative":
            return f.clamp(max=self.F_max)
        if self.name == "window_relative":
            return torch.full_like(f, self.F_max)
        return f

    def frame_ids(self, f: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Ids of frames j seen from newest frame f. f: [B, 1], j: [B, K] -> [B, K]."""
        if self.name == "absolute":
            return j
        n = self._newest(f)
        return torch.where(j < self.S, j, n - (f - j))

    def memory_ids(self, f: torch.Tensor) -> torch.Tensor:
        """Ids of the Fm memory frames (oldest first) seen from newest frame f: [B, 1] -> [B, Fm]."""
        n = self._newest(f)
        offs = torch.arange(self.Fm, device=f.device) - (self.W + self.Fm - 1)
        return n + offs

    def layout(self, f: int, chunk: int = 1) -> TemporalIds:
        """Ids of [sink | memory | window | current] when the chunk ending at frame f is generated."""
        ft = torch.tensor([[f]])
        first = f - chunk + 1  # first frame of the current chunk
        sinks = list(range(min(self.S, first)))
        window = [j for j in range(max(self.S, f - self.W + 1), first)]
        ids = lambda js: self.frame_ids(ft, torch.tensor([js], dtype=torch.long))[0].tolist() if js else []
        return TemporalIds(sink=ids(sinks), memory=self.memory_ids(ft)[0].tolist(),
                           window=ids(window), current=ids(list(range(first, f + 1))))


def _axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Split the head dim into (t, h, w) groups, each even."""
    d_hw = 2 * (head_dim // 6)
    return head_dim - 2 * d_hw, d_hw, d_hw


class Rotary3D(torch.nn.Module):
    """Rotation tables for 3D RoPE; the temporal table is indexed by (recipe) ids.

    Rotation uses the half-split convention: x * cos + rotate_half(x) * sin,
    with angles [theta_t | theta_h | theta_w] repeated over both halves.
    """

    def __init__(self, cfg: ModelConfig, recipe: RopeRecipe):
        super().__init__()
        Dh, theta = cfg.dit.head_dim, cfg.dit.rope_theta
        dt, dh, dw = _axis_dims(Dh)
        self.recipe = recipe
        inv = lambda d: 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
        self.register_buffer("inv_t", inv(dt), persistent=False)  # [dt/2]
        g = cfg.tokenizer.grid_size
        mside = int(round(cfg.memory.memory_tokens_per_frame ** 0.5))
        hh, ww = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
        # Memory tokens lie on a coarse grid over the frame (stride g / mside), like pooled patches.
        stride = g // mside
        mh, mw = torch.meshgrid(torch.arange(mside) * stride + (stride - 1) / 2,
                                torch.arange(mside) * stride + (stride - 1) / 2, indexing="ij")
        frame_hw = torch.cat([hh.reshape(-1, 1).double() * inv(dh), ww.reshape(-1, 1).double() * inv(dw)], -1)
        mem_hw = torch.cat([mh.reshape(-1, 1).double() * inv(dh), mw.reshape(-1, 1).double() * inv(dw)], -1)
        self.register_buffer("frame_hw", frame_hw.float(), persistent=False)  # [N, (dh+dw)/2]
        self.register_buffer("mem_hw", mem_hw.float(), persistent=False)  # [Mf, (dh+dw)/2]
        self.id_lo = 0
        if recipe.bounded:
            # Precomputed temporal angles for every id the recipe can produce.
            lo, hi = recipe.id_range()
            self.id_lo = lo
            ids = torch.arange(lo, hi + 1, dtype=torch.float64)
            self.register_buffer("t_table", (ids[:, None] * inv(dt)).float(), persistent=False)
        else:
            self.t_table = None

    def temporal_angles(self, ids: torch.Tensor) -> torch.Tensor:
        """[...] int ids -> [..., dt/2] angles (table lookup, computed in fp64 if unbounded)."""
        if self.t_table is not None:
            return self.t_table[ids - self.id_lo]
        return (ids.double()[..., None] * self.inv_t).float()

    def cos_sin(self, t_ids: torch.Tensor, memory: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token cos/sin for frames with temporal ids t_ids [B, F] -> 2 x [B, F*n, Dh]."""
        ta = self.temporal_angles(t_ids)  # [B, F, dt/2]
        hw = self.mem_hw if memory else self.frame_hw  # [n, (dh+dw)/2]
        B, F, n = ta.shape[0], ta.shape[1], hw.shape[0]
        ang = torch.cat([ta[:, :, None, :].expand(B, F, n, ta.shape[-1]),
                         hw.expand(B, F, n, hw.shape[-1])], -1)
        ang = ang.reshape(B, F * n, ta.shape[-1] + hw.shape[-1])
        ang = torch.cat([ang, ang], -1)  # [B, F*n, Dh]
        return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [..., B, H, T, Dh]; cos/sin [B, T, Dh] -> rotated x."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos[:, None] + torch.cat([-x2, x1], -1) * sin[:, None]
