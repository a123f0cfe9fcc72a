"""The world state: one fixed-size bundle of tensors per batch of B worlds.

Everything a world needs to continue lives here (KV cache, memory, frame
index, rng, prompt), so a world can be snapshotted to a flat dict of tensors
and restored exactly (same frames afterwards), and B worlds can be stepped in
one forward pass, each with its own frame index, memory and generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .cache import KVCache

NEVER = -(2**40)
"""`prompt_frame` of a world whose prompt has not changed since it began."""


@dataclass
class WorldState:
    frame: torch.Tensor  # [B] int64, index of the next frame to generate
    cache: KVCache  # k, v [L, B, H, slots, N, Dh]; slot_frame, level, action [B, slots]; latent, clean [B, slots, N, C]
    memory: dict[str, torch.Tensor]  # policy state, e.g. {"queries": [B, M, D]}
    prompt_pooled: torch.Tensor  # [B, P]
    prompt_tokens: torch.Tensor  # [B, Lp, P]
    prompt_mask: torch.Tensor  # [B, Lp] bool
    prev_latent: torch.Tensor  # [B, N, C] the last committed frame's latent (the direct path's input)
    prev_level: torch.Tensor  # [B] its noise level (1 = no previous frame yet)
    prev_clean: torch.Tensor  # [B, N, C] the same frame before its context noise (dit.prev_copy_clean)
    # [B] int64 frame index at which the prompt last changed (NEVER: not since the start); a world the restyle
    # repainted counts sampler.snap_hold frames earlier (WorldModel.restyle_worlds: nothing left to hold)
    prompt_frame: torch.Tensor
    generators: list[torch.Generator]  # one per world: noise is independent of the batch
    # world/tile_map.py: codes [B, S, S], where [B, S, S, 2], origin [B, 2] int64 (empty in the graphs' partial states)
    tile_map: dict[str, torch.Tensor] = field(default_factory=dict)
    updates_since_detach: int = field(default=0)  # truncated BPTT bookkeeping (training only)

    @property
    def batch(self) -> int:
        return self.frame.shape[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The state as a flat dict of tensors (no copies)."""
        out = {"frame": self.frame, "cache.k": self.cache.k, "cache.v": self.cache.v,
               "cache.slot_frame": self.cache.slot_frame, "cache.latent": self.cache.latent,
               "cache.level": self.cache.level, "cache.action": self.cache.action, "cache.clean": self.cache.clean,
               "prompt.pooled": self.prompt_pooled,
               "prompt.tokens": self.prompt_tokens, "prompt.mask": self.prompt_mask,
               "prev.latent": self.prev_latent, "prev.level": self.prev_level, "prev.clean": self.prev_clean,
               "prompt.frame": self.prompt_frame}
        out.update({f"memory.{k}": v for k, v in self.memory.items()})
        out.update({f"tile_map.{k}": v for k, v in self.tile_map.items()})
        return out

    def copy_world(self, w: int, src: "WorldState", i: int, memory_layer_major: tuple[str, ...] = ()) -> None:
        """World w of this state becomes world i of `src`, in place (every tensor and the
        generator). memory_layer_major: the memory tensors laid out [L, B, ...]
        (`MemoryPolicy.layer_major`); the cache's K/V always are, the rest is [B, ...]."""
        major = {"cache.k", "cache.v", *(f"memory.{k}" for k in memory_layer_major)}
        theirs = src.tensors()
        for name, t in self.tensors().items():
            axis = 1 if name in major else 0
            t.select(axis, w).copy_(theirs[name].select(axis, i))
        self.generators[w] = src.generators[i]

    def snapshot(self) -> dict[str, torch.Tensor]:
        """Detached copies of every tensor, plus the generators' states ("rng": [B, bytes] uint8)."""
        snap = {k: v.detach().clone() for k, v in self.tensors().items()}
        snap["rng"] = torch.stack([g.get_state() for g in self.generators])
        return snap

    @classmethod
    def restore(cls, snap: dict[str, torch.Tensor], sink_frames: int, chunk_frames: int) -> "WorldState":
        """Rebuild a state from `snapshot()` (tensors are copied, the snapshot stays reusable)."""
        s = {k: v.clone() for k, v in snap.items()}
        device = s["frame"].device
        gens = []
        for row in s["rng"]:
            g = torch.Generator(device=device)
            g.set_state(row.cpu().clone())  # an owned tensor: set_state ignores view offsets
            gens.append(g)
        cache = KVCache(s["cache.k"], s["cache.v"], s["cache.slot_frame"], sink_frames, chunk_frames,
                        s["cache.latent"], s["cache.level"], s["cache.action"], s["cache.clean"])
        memory = {k[len("memory."):]: v for k, v in s.items() if k.startswith("memory.")}
        tile_map = {k[len("tile_map."):]: v for k, v in s.items() if k.startswith("tile_map.")}
        return cls(frame=s["frame"], cache=cache, memory=memory, prompt_pooled=s["prompt.pooled"],
                   prompt_tokens=s["prompt.tokens"], prompt_mask=s["prompt.mask"],
                   prev_latent=s["prev.latent"], prev_level=s["prev.level"], prev_clean=s["prev.clean"],
                   prompt_frame=s["prompt.frame"], tile_map=tile_map, generators=gens)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.tensors().items()}
