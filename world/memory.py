"""Long-range memory policies behind one interface.

Every policy decides (1) which frames the static cache keeps (sink slots and
ring size) and (2) which extra memory tokens sit left of the local window:

- `window`:   local window only (no sink, no memory);
- `sink`:     sink frames + window (LongLive / StreamingLLM attention sinks);
- `compress`: sink + window + fixed-ratio pooling of each evicted frame into
              a fixed number of slots (FramePack-style), per layer;
- `evolving`: sink + window + the Echo-Infinity evolving memory: learnable
              queries updated by cross-attention over the evicted frame's
              last-layer pre-RoPE K/V and a gate, read through the encoder's
              own to_k / to_v and shared by all DiT layers;
- `full`:     no eviction (a long ring that never wraps); short reference runs.

`update` is branch-free: it is computed for every world and applied with
`torch.where(evict, new, old)`, so a step's cost never depends on the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig


@dataclass
class MemoryRead:
    """Memory K/V as the DiT sees them (pre-RoPE)."""

    k: torch.Tensor  # [L or 1, B, H, M, Dh] (1 = shared by all layers)
    v: torch.Tensor  # [L or 1, B, H, M, Dh]
    valid: torch.Tensor | None  # [B, M] bool, None = all valid


class MemoryPolicy(nn.Module):
    """Base class; subclasses set sink_frames, ring_frames and num_tokens."""

    name = "base"
    sink_frames: int
    ring_frames: int
    num_tokens: int = 0  # M memory tokens visible to attention
    evicts: bool = True
    layer_major: tuple[str, ...] = ()  # state tensors laid out [L, B, ...] (batch on axis 1); the rest [B, ...]

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        m = cfg.memory
        self.cfg = cfg
        self.ring_frames = m.window_frames - m.chunk_frames
        self.sink_frames = m.sink_frames

    def init_state(self, batch: int, device=None) -> dict[str, torch.Tensor]:
        return {}

    def read(self, mem: dict[str, torch.Tensor]) -> MemoryRead | None:
        return None

    def update(self, mem: dict[str, torch.Tensor], k_ev: torch.Tensor, v_ev: torch.Tensor,
               evict: torch.Tensor) -> dict[str, torch.Tensor]:
        """k_ev, v_ev: the evicted frame's pre-RoPE K/V, [L, B, H, N, Dh]; evict: [B] bool."""
        return mem


class WindowPolicy(MemoryPolicy):
    name = "window"

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.sink_frames = 0


class SinkPolicy(MemoryPolicy):
    name = "sink"


class FullPolicy(MemoryPolicy):
    """No eviction: the ring holds `full_capacity` frames and never wraps."""

    name = "full"
    evicts = False

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.ring_frames = cfg.memory.full_capacity


def _pool_grid(x: torch.Tensor, grid: int, side: int) -> torch.Tensor:
    """Average-pool frame tokens on their grid: [..., grid*grid, Dh] -> [..., side*side, Dh]."""
    s = grid // side
    lead, Dh = x.shape[:-2], x.shape[-1]
    x = x.reshape(*lead, side, s, side, s, Dh)
    return x.mean(dim=(-4, -2)).reshape(*lead, side * side, Dh)


class CompressMemory(MemoryPolicy):
    """Each evicted frame is pooled (ratio N / Mf) into one of Fm FIFO slots, per layer."""

    name = "compress"
    layer_major = ("k", "v")  # [L, B, H, Fm, Mf, Dh]

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        m = cfg.memory
        self.num_tokens = m.memory_tokens
        self.side = int(round(m.memory_tokens_per_frame ** 0.5))

    def init_state(self, batch: int, device=None) -> dict[str, torch.Tensor]:
        d, m = self.cfg.dit, self.cfg.memory
        shape = (d.depth, batch, d.heads, m.memory_frames, m.memory_tokens_per_frame, d.head_dim)
        return {"k": torch.zeros(shape, device=device), "v": torch.zeros(shape, device=device),
                "valid": torch.zeros(batch, m.memory_frames, dtype=torch.bool, device=device)}

    def read(self, mem):
        L, B, H, Fm, Mf, Dh = mem["k"].shape
        valid = mem["valid"][:, :, None].expand(B, Fm, Mf).reshape(B, Fm * Mf)
        return MemoryRead(mem["k"].reshape(L, B, H, Fm * Mf, Dh), mem["v"].reshape(L, B, H, Fm * Mf, Dh), valid)

    def update(self, mem, k_ev, v_ev, evict):
        g = self.cfg.tokenizer.grid_size
        pk = _pool_grid(k_ev, g, self.side)[:, :, :, None]  # [L, B, H, 1, Mf, Dh]
        pv = _pool_grid(v_ev, g, self.side)[:, :, :, None]
        # FIFO: drop the oldest slot, append the newest (slots ordered oldest -> newest)
        k = torch.cat([mem["k"][:, :, :, 1:], pk], 3)
        v = torch.cat([mem["v"][:, :, :, 1:], pv], 3)
        valid = torch.cat([mem["valid"][:, 1:], torch.ones_like(mem["valid"][:, :1])], 1)
        e = evict[None, :, None, None, None, None]
        return {"k": torch.where(e, k, mem["k"]), "v": torch.where(e, v, mem["v"]),
                "valid": torch.where(evict[:, None], valid, mem["valid"])}


class _CrossAttnLayer(nn.Module):
    """Memory queries attend over an evicted frame's K/V (already in head layout)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.RMSNorm(dim)
        self.to_q = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.RMSNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, M, D = q.shape  # q [B, M, D]; k, v [B, H, N, Dh]
        h = self.to_q(self.norm1(q)).view(B, M, self.heads, -1).transpose(1, 2)  # [B, H, M, Dh]
        a = F.scaled_dot_product_attention(h, k, v)  # [B, H, M, Dh]
        q = q + self.proj(a.transpose(1, 2).reshape(B, M, D))
        return q + self.ffn(self.norm2(q))


class EvolvingMemory(MemoryPolicy):
    """Echo-Infinity evolving memory.

    State Q [B, M, D], reset to the learned `query_init`. On eviction:
      Q~    = connector(encoder(Q_old, K_ev, V_ev))           (2 cross-attn layers)
      g     = sigmoid(W_g [Q_old ; Q~] + b),  b = +2 -> g ~= 0.88 at init
      Q_new = g * Q_old + (1 - g) * Q~
    Read: K_mem, V_mem = to_k(Q), to_v(Q), the same for every DiT layer.
    """

    name = "evolving"

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        d, m = cfg.dit, cfg.memory
        D = d.dim
        self.num_tokens = m.memory_tokens
        self.heads, self.head_dim = d.heads, d.head_dim
        self.query_init = nn.Parameter(torch.randn(m.memory_tokens, D) * 0.02)  # [M, D]
        self.layers = nn.ModuleList(_CrossAttnLayer(D, d.heads, 2.0) for _ in range(m.encoder_layers))
        self.connector = nn.Sequential(nn.Linear(D, D), nn.GELU(), nn.Linear(D, D), nn.RMSNorm(D))
        self.gate = nn.Linear(2 * D, D)
        nn.init.normal_(self.gate.weight, std=0.02 / D ** 0.5)  # small: g starts at sigmoid(b)
        nn.init.constant_(self.gate.bias, m.gate_bias)
        self.norm_read = nn.RMSNorm(D)
        self.to_k = nn.Linear(D, D)
        self.to_v = nn.Linear(D, D)

    def init_state(self, batch: int, device=None) -> dict[str, torch.Tensor]:
        q = self.query_init[None].expand(batch, -1, -1)  # [B, M, D]
        if not torch.is_grad_enabled():
            q = q.clone()
        return {"queries": q.to(device) if device is not None else q}

    def read(self, mem):
        q = self.norm_read(mem["queries"])
        B, M, _ = q.shape
        k = self.to_k(q).view(B, M, self.heads, self.head_dim).transpose(1, 2)  # [B, H, M, Dh]
        v = self.to_v(q).view(B, M, self.heads, self.head_dim).transpose(1, 2)
        return MemoryRead(k[None], v[None], None)

    def gate_values(self, q_old: torch.Tensor, q_new: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(torch.cat([q_old, q_new], -1)))  # [B, M, D]

    def update(self, mem, k_ev, v_ev, evict):
        if not self.cfg.memory.updates:  # ablation: memory stays at query_init
            return mem
        q_old = mem["queries"]
        q = q_old
        for layer in self.layers:  # last DiT layer's pre-RoPE K/V of the evicted frame
            q = layer(q, k_ev[-1], v_ev[-1])
        q_tilde = self.connector(q)
        g = self.gate_values(q_old, q_tilde)
        q_new = g * q_old + (1 - g) * q_tilde
        return {"queries": torch.where(evict[:, None, None], q_new, q_old)}


POLICIES: dict[str, type[MemoryPolicy]] = {
    "window": WindowPolicy, "sink": SinkPolicy, "compress": CompressMemory,
    "evolving": EvolvingMemory, "full": FullPolicy,
}


def build_policy(cfg: ModelConfig) -> MemoryPolicy:
    return POLICIES[cfg.memory.policy](cfg)
