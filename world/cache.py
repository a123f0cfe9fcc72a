"""Static KV cache: fixed-size per-layer buffers for sink slots + a window ring.

gpt-fast style: buffers are allocated once and written in place at an index;
they never grow, so every step has the same shapes (CUDA graphs / TensorRT
friendly). Keys are stored *before* RoPE; the recipe rotates them at read time.

Slot layout (frames): [0, S) hold the sink frames 0..S-1 forever; [S, S+R)
form a ring of R = W - chunk window frames (the current chunk is the W-th
window frame and lives only in the forward pass until its context pass).
`slot_frame[b, s]` is the frame index held in slot s of world b (-1: empty);
it gives both the validity mask and the frame's RoPE id.

Beside each slot's K/V the cache keeps what its context pass read: the frame's
latent (as committed, noised to its level), that level, the frame's action and
its clean latent (before the context noise; what the direct path's copy reads
with `dit.prev_copy_clean`), so the K/V can be recomputed later under another
prompt (`WorldModel.recache`).
"""

from __future__ import annotations

import torch


class KVCache:
    """Per-world static K/V buffers for all layers: k, v [L, B, H, slots, N, Dh]; per slot
    also latent and clean [B, slots, N, C], level [B, slots] and action [B, slots] (None in
    the exported graphs, which only read K/V)."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, slot_frame: torch.Tensor,
                 sink_frames: int, chunk_frames: int, latent: torch.Tensor | None = None,
                 level: torch.Tensor | None = None, action: torch.Tensor | None = None,
                 clean: torch.Tensor | None = None):
        self.k, self.v, self.slot_frame = k, v, slot_frame
        self.latent, self.level, self.action, self.clean = latent, level, action, clean
        self.S, self.c = sink_frames, chunk_frames
        self.R = k.shape[3] - sink_frames  # ring frames

    @classmethod
    def allocate(cls, layers: int, batch: int, heads: int, sink_frames: int, ring_frames: int,
                 tokens: int, head_dim: int, chunk_frames: int, token_dim: int, device=None,
                 dtype=torch.float32) -> "KVCache":
        slots = sink_frames + ring_frames
        shape = (layers, batch, heads, slots, tokens, head_dim)
        k = torch.zeros(shape, device=device, dtype=dtype)
        v = torch.zeros(shape, device=device, dtype=dtype)
        slot_frame = torch.full((batch, slots), -1, dtype=torch.long, device=device)
        latent = torch.zeros(batch, slots, tokens, token_dim, device=device, dtype=dtype)
        level = torch.ones(batch, slots, device=device, dtype=dtype)
        action = torch.zeros(batch, slots, dtype=torch.long, device=device)
        return cls(k, v, slot_frame, sink_frames, chunk_frames, latent, level, action, torch.zeros_like(latent))

    @property
    def slots(self) -> int:
        return self.k.shape[3]

    def slots_for(self, first_frame: torch.Tensor) -> torch.Tensor:
        """Slots that frames first..first+c-1 go to: [B] -> [B, c].

        Sink frames go to their own slot; later chunks cycle through the ring
        (chunk-aligned), overwriting the oldest chunk in the window.
        """
        offs = torch.arange(self.c, device=first_frame.device)
        ring_chunk = ((first_frame - self.S).clamp(min=0) // self.c) % (self.R // self.c)
        base = torch.where(first_frame < self.S, first_frame, self.S + ring_chunk * self.c)
        return base[:, None] + offs  # [B, c]

    def gather_frame(self, slot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All layers' K/V at one per-world slot [B] -> 2 x [L, B, H, N, Dh]."""
        b = torch.arange(slot.shape[0], device=slot.device)
        # advanced indices on dims 1 and 3 move to the front: [B, L, H, N, Dh]
        return self.k[:, b, :, slot].transpose(0, 1), self.v[:, b, :, slot].transpose(0, 1)

    def write(self, slots: torch.Tensor, frames: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor,
              latent: torch.Tensor, level: torch.Tensor, action: torch.Tensor, clean: torch.Tensor) -> None:
        """In-place write of a chunk. slots, frames: [B, c]; k_new, v_new: [L, B, H, c, N, Dh];
        what the context pass read: latent [B, c, N, C], level [B, c], action [B, c]; and
        clean [B, c, N, C], the latent before its context noise."""
        self.write_kv(slots, k_new, v_new)
        b = torch.arange(slots.shape[0], device=slots.device)[:, None]
        self.slot_frame[b, slots] = frames
        self.latent[b, slots] = latent.to(self.latent.dtype)
        self.level[b, slots] = level.to(self.level.dtype)
        self.action[b, slots] = action
        self.clean[b, slots] = clean.to(self.clean.dtype)

    def write_kv(self, slots: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor,
                 worlds: torch.Tensor | None = None) -> None:
        """In-place write of K/V only. slots: [B', c]; k_new, v_new: [L, B', H, c, N, Dh];
        worlds [B'] int64: which worlds of the batch the rows are (None: all, in order)."""
        b = (torch.arange(slots.shape[0], device=slots.device) if worlds is None else worlds)[:, None]
        for layer in range(self.k.shape[0]):
            # .to: under bf16 autocast the projections come out bf16; the cache stays in its dtype
            self.k[layer][b, :, slots] = k_new[layer].transpose(1, 2).to(self.k.dtype)  # [B, c, H, N, Dh]
            self.v[layer][b, :, slots] = v_new[layer].transpose(1, 2).to(self.v.dtype)

    def all_kv(self, used_slots: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-RoPE K/V of every layer as token sequences: 2 x [L, B, H, s*N, Dh], s = used_slots
        (None: all slots)."""
        k, v = self.k[:, :, :, :used_slots], self.v[:, :, :, :used_slots]
        L, B, H, s, N, Dh = k.shape
        return k.reshape(L, B, H, s * N, Dh), v.reshape(L, B, H, s * N, Dh)

    def clone(self) -> "KVCache":
        copy = lambda t: None if t is None else t.clone()
        return KVCache(self.k.clone(), self.v.clone(), self.slot_frame.clone(), self.S, self.c,
                       copy(self.latent), copy(self.level), copy(self.action), copy(self.clean))
