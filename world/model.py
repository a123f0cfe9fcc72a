"""WorldModel: tokenizer + causal DiT + memory policy + RoPE recipe + sampler.

Streaming (inference and training stage 2), one chunk per `step`:
  1. build the step's attention context once: cached keys rotated with the
     recipe's ids, memory K/V, validity mask;
  2. denoise the new chunk from noise with K rectified-flow steps;
  3. one context pass at t = context_noise over the finished chunk writes its
     pre-RoPE K/V; if the window is full, the oldest window frame is evicted
     into the memory policy first (its slot is then overwritten in place);
  4. decode the latent tokens to uint8 pixels.
The parallel path (`forward_parallel`, training stage 1) runs a whole clip
block-causally and agrees with streaming for clips that fit in the window.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import codebook, copy_gate, sampler, tile_map
from .actions import move_neighbours
from .cache import KVCache
from .checkpoint import CONFIG_FILE, WEIGHTS_FILE, check_tensors, read_config, read_safetensors
from .config import ModelConfig
from .dit import DiT, ParallelContext
from .memory import build_policy
from .passability import Passability
from .prev_frame import CENTRE
from .restyle import Restyle
from .rope import RopeRecipe, Rotary3D, apply_rope
from .spawn import Spawn
from .state import NEVER, WorldState
from .text import PromptEmbedding
from .tokenizer import FrameTokenizer

PromptLike = PromptEmbedding | torch.Tensor | Sequence[PromptEmbedding] | None
HAZARD_LOGIT = 20.0
"""The done logit of a step onto a hazard (`game.hazards`): sigmoid 1 - 2e-9, finite for every consumer."""


class StepResult(NamedTuple):
    frame: torch.Tensor  # uint8 [B, H, W, 3] ([B, c, H, W, 3] for chunks of c > 1 frames)
    reward: torch.Tensor  # [B] (or [B, c])
    done_prob: torch.Tensor  # [B] (or [B, c])


class StreamContext:
    """Attention context of one streaming step: [cache | memory | current chunk].

    Built once per step and shared by every denoising pass and the context
    pass: the cache's pre-RoPE keys are rotated here, all layers at once.
    """

    def __init__(self, model: "WorldModel", state: WorldState, in_place: bool | None = None):
        cfg, cache = model.cfg, state.cache
        c, N = cfg.memory.chunk_frames, cfg.tokenizer.tokens_per_frame
        rotary, recipe = model.rotary, model.rotary.recipe
        f_last = (state.frame + c - 1)[:, None]  # newest frame of the chunk [B, 1]
        used = model._used_slots(state)
        slot_frame = cache.slot_frame[:, :used]  # [B, s]
        valid = slot_frame >= 0
        ids = recipe.frame_ids(f_last, torch.where(valid, slot_frame, f_last))  # empty slots: any in-range id
        cos_c, sin_c = rotary.cos_sin(ids)  # [B, s*N, Dh]
        self.slot_ids, self.slot_valid = ids, valid  # kept for inspection and tests
        self.memory_ids = recipe.memory_ids(f_last)  # [B, Fm]
        mem = model.policy.read(state.memory)
        masks = [valid.repeat_interleave(N, dim=1)]  # [B, s*N]
        mem_k = mem_v = None
        if mem is not None:
            cos_m, sin_m = rotary.cos_sin(self.memory_ids, memory=True)  # [B, M, Dh]
            mem_k, mem_v = apply_rope(mem.k, cos_m, sin_m), mem.v  # [L or 1 (shared), B, H, M, Dh]
            if mem.valid is not None:
                masks.append(mem.valid)
            else:
                masks.append(torch.ones(valid.shape[0], mem.k.shape[-2], dtype=torch.bool, device=valid.device))
        # Per layer, one [B, H, K_ctx + cN, Dh] buffer: [rotated cache | memory | current chunk],
        # built for all layers at once: one rotation and one concatenation instead of one per layer.
        # Without autograd the current chunk's K/V are written into the tail in place, so a
        # denoising pass copies cN rows instead of concatenating all K_total rows.
        # in_place=False forces the concatenating path (pure functions: ONNX export, engines/).
        self.in_place = not torch.is_grad_enabled() if in_place is None else in_place
        k, v = cache.all_kv(used)  # [L, B, H, s*N, Dh] pre-RoPE
        parts_k, parts_v = [apply_rope(k, cos_c, sin_c)], [v]
        if mem_k is not None:
            parts_k.append(mem_k.expand(k.shape[0], -1, -1, -1, -1))
            parts_v.append(mem_v.expand(k.shape[0], -1, -1, -1, -1))
        if self.in_place:
            tail = k.new_zeros(*k.shape[:3], c * N, k.shape[4])
            parts_k.append(tail)
            parts_v.append(tail)
        self.k = list(torch.cat(parts_k, 3).unbind(0))
        self.v = list(torch.cat(parts_v, 3).unbind(0))
        self.n_ctx = self.k[0].shape[2] - (c * N if self.in_place else 0)
        masks.append(torch.ones(valid.shape[0], c * N, dtype=torch.bool, device=valid.device))
        valid_keys = torch.cat(masks, 1)[:, None, None, :]  # [B, 1, 1, K_total]
        # additive float mask: ~10% faster than a bool mask in CPU SDPA
        self.mask = torch.zeros(valid_keys.shape, device=valid_keys.device).masked_fill_(~valid_keys, float("-inf"))
        cur = state.frame[:, None] + torch.arange(c, device=state.frame.device)  # [B, c]
        self.q_cos, self.q_sin = rotary.cos_sin(recipe.frame_ids(f_last, cur))  # [B, c*N, Dh]
        self.clock = cur  # the chunk's frame indices (dit.clock)
        self.record = False
        self.new_k: list[torch.Tensor] = []
        self.new_v: list[torch.Tensor] = []

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k, v [B, H, cN, Dh] pre-RoPE -> [B, H, cN, Dh]."""
        if self.record:  # context pass: keep the chunk's pre-RoPE K/V for the cache
            self.new_k.append(k)
            self.new_v.append(v)
        q, k = apply_rope(torch.stack([q, k]), self.q_cos, self.q_sin)  # one rotation for both
        if self.in_place:
            self.k[layer][:, :, self.n_ctx:] = k
            self.v[layer][:, :, self.n_ctx:] = v
            k, v = self.k[layer], self.v[layer]
        else:
            k, v = torch.cat([self.k[layer], k], 2), torch.cat([self.v[layer], v], 2)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)


class RecacheContext:
    """Attention of a re-cache pass: every cached frame is a query again, block-causal.

    Frame i (newest frame of its chunk e_i) attends [memory | the cached frames up to e_i],
    rotated with the ids the recipe gives from e_i: what its own context pass saw, except
    frames evicted since (their K/V are gone; memory holds what they left) and memory as it
    is now. Query frames are folded into the batch axis, as in ParallelContext.
    """

    def __init__(self, model: "WorldModel", frames: torch.Tensor, memory):
        """frames [B, s]: the cached frames, oldest first (-1: empty slot); memory: MemoryRead | None."""
        B, s = frames.shape
        N, c = model.cfg.tokenizer.tokens_per_frame, model.cfg.memory.chunk_frames
        rotary, recipe = model.rotary, model.rotary.recipe
        valid = frames >= 0
        f = frames.clamp(min=0)
        self.clock = f  # each cached frame's index (dit.clock)
        last = (f // c) * c + c - 1  # newest frame of each frame's chunk [B, s]
        e = last.reshape(B * s, 1)
        j = torch.minimum(f[:, None, :].expand(B, s, s).reshape(B * s, s), e)  # later frames: masked, ids in range
        self.q_cos, self.q_sin = rotary.cos_sin(recipe.frame_ids(e, f.reshape(B * s, 1)))  # [B*s, N, Dh]
        k_cos, k_sin = rotary.cos_sin(recipe.frame_ids(e, j))  # [B*s, s*N, Dh]
        allowed = (valid[:, None, :] & (f[:, None, :] <= last[:, :, None])) | torch.eye(s, dtype=torch.bool,
                                                                                         device=f.device)
        allowed = allowed.repeat_interleave(N, dim=2)  # [B, s, s*N]
        self.memory = memory
        if memory is not None:
            m_cos, m_sin = rotary.cos_sin(recipe.memory_ids(e), memory=True)  # [B*s, M, Dh]
            k_cos, k_sin = torch.cat([m_cos, k_cos], 1), torch.cat([m_sin, k_sin], 1)
            M = memory.k.shape[-2]
            m_valid = torch.ones(B, M, dtype=torch.bool, device=f.device) if memory.valid is None else memory.valid
            allowed = torch.cat([m_valid[:, None].expand(B, s, M), allowed], 2)
        self.k_cos, self.k_sin = k_cos, k_sin
        allowed = allowed.reshape(B * s, 1, 1, -1)
        self.mask = torch.zeros(allowed.shape, device=f.device).masked_fill_(~allowed, float("-inf"))
        self.s, self.N = s, N
        self.new_k: list[torch.Tensor] = []
        self.new_v: list[torch.Tensor] = []

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k, v [B, H, s*N, Dh] pre-RoPE -> [B, H, s*N, Dh]; keeps k, v for the cache."""
        self.new_k.append(k)
        self.new_v.append(v)
        B, H, _, Dh = q.shape
        s, N = self.s, self.N
        q = apply_rope(q.view(B, H, s, N, Dh).transpose(1, 2).reshape(B * s, H, N, Dh), self.q_cos, self.q_sin)
        k = k[:, None].expand(B, s, H, s * N, Dh).reshape(B * s, H, s * N, Dh)
        v = v[:, None].expand(B, s, H, s * N, Dh).reshape(B * s, H, s * N, Dh)
        if self.memory is not None:
            i = layer if self.memory.k.shape[0] > 1 else 0
            M = self.memory.k.shape[-2]
            mk = self.memory.k[i][:, None].expand(B, s, H, M, Dh).reshape(B * s, H, M, Dh)
            mv = self.memory.v[i][:, None].expand(B, s, H, M, Dh).reshape(B * s, H, M, Dh)
            k, v = torch.cat([mk, k], 2), torch.cat([mv, v], 2)
        out = F.scaled_dot_product_attention(q, apply_rope(k, self.k_cos, self.k_sin), v, attn_mask=self.mask)
        return out.view(B, s, H, N, Dh).transpose(1, 2).reshape(B, H, s * N, Dh)


class WorldModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        m = cfg.memory
        self.tokenizer = FrameTokenizer(cfg.tokenizer)
        self.dit = DiT(cfg)
        self.policy = build_policy(cfg)
        # `full` never evicts: its "window" is the whole capacity, so ids never get capped.
        recipe = RopeRecipe(m.rope, m.sink_frames, m.memory_frames, self.policy.ring_frames + m.chunk_frames)
        self.rotary = Rotary3D(cfg, recipe)
        self.passability = Passability(cfg.tokenizer.codebook_size, cfg.game.hazards) if cfg.game.passability else None
        self.spawn = Spawn(cfg.tokenizer.codebook_size) if cfg.game.spawn else None
        self.restyle = (Restyle(cfg.tokenizer.codebook_size, cfg.tokenizer.token_dim, cfg.dit.prompt_dim,
                                cfg.game.restyle) if cfg.game.restyle else None)

    # -- state ------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.dit.in_proj.weight.device

    def init_state(self, batch: int = 1, prompt: PromptLike = None, seed: int | Sequence[int] = 0,
                   first_frame: torch.Tensor | None = None) -> WorldState:
        """Fresh worlds. seed: int (world b gets seed + b) or one seed per world.

        prompt: None/"unconditional", one PromptEmbedding (all worlds), a list
        of B of them, or a pooled embedding tensor [P] / [B, P].
        first_frame: optional uint8 [B, H, W, 3]; it is written as frame 0
        (with action 0) and generation continues from frame 1.
        """
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        cfg, dev = self.cfg, self.device
        seeds = [seed + b for b in range(batch)] if isinstance(seed, int) else [int(s) for s in seed]
        if len(seeds) != batch:
            raise ValueError(f"got {len(seeds)} seeds for a batch of {batch} worlds")
        gens = [torch.Generator(device=dev).manual_seed(s) for s in seeds]
        d = cfg.dit
        cache = KVCache.allocate(d.depth, batch, d.heads, self.policy.sink_frames, self.policy.ring_frames,
                                 cfg.tokenizer.tokens_per_frame, d.head_dim, cfg.memory.chunk_frames,
                                 cfg.tokenizer.token_dim, device=dev)
        pooled, tokens, mask = self.prompt_tensors(prompt, batch)
        tk = cfg.tokenizer
        state = WorldState(frame=torch.zeros(batch, dtype=torch.long, device=dev), cache=cache,
                           memory=self.policy.init_state(batch, dev), prompt_pooled=pooled,
                           prompt_tokens=tokens, prompt_mask=mask,
                           prev_latent=torch.zeros(batch, tk.tokens_per_frame, tk.token_dim, device=dev),
                           prev_level=torch.ones(batch, device=dev),
                           prev_clean=torch.zeros(batch, tk.tokens_per_frame, tk.token_dim, device=dev),
                           prompt_frame=torch.full((batch,), NEVER, dtype=torch.long, device=dev),
                           tile_map=tile_map.empty(batch, dev), generators=gens)
        if first_frame is not None:
            if cfg.memory.chunk_frames != 1:
                raise ValueError("first_frame needs chunk_frames == 1")
            x0 = self.tokenizer.encode(first_frame.to(dev))[:, None]  # [B, 1, N, C]
            if x0.shape[0] != batch:
                raise ValueError(f"first_frame has {x0.shape[0]} frames for a batch of {batch} worlds")
            with torch.no_grad():
                ctx = StreamContext(self, state)
                self.commit(state, ctx, x0, torch.zeros(batch, 1, dtype=torch.long, device=dev))
        return state

    def set_prompt(self, state: WorldState, prompt: PromptLike, recache: bool = True) -> list[int]:
        """Change the prompt mid-game (in place; the world continues, no reset).

        recache: recompute the cached frames' K/V of the worlds whose prompt changed (one
        `recache` pass), so the window speaks the new prompt from the next frame on; with
        `game.restyle` every frame the world keeps is first repainted in the new look
        (`restyle_worlds`). Returns those worlds."""
        pooled, tokens, mask = self.prompt_tensors(prompt, state.batch)
        changed = ((pooled != state.prompt_pooled).any(1) | (tokens != state.prompt_tokens).flatten(1).any(1)
                   | (mask != state.prompt_mask).any(1))  # [B]
        state.prompt_pooled.copy_(pooled)
        state.prompt_tokens.copy_(tokens)
        state.prompt_mask.copy_(mask)
        state.prompt_frame[changed] = state.frame[changed]
        worlds = torch.nonzero(changed).flatten().tolist()
        if recache and worlds:
            if self.restyle is not None:
                self.restyle_worlds(state, changed)
            self.recache(state, worlds)
        return worlds

    @torch.no_grad()
    def restyle_worlds(self, state: WorldState, worlds: torch.Tensor) -> torch.Tensor:
        """`game.restyle`: every token the worlds keep (the window's frames, the previous frame, the
        tile map) becomes its code in the look their prompt names (world/restyle.py); the
        context noise a cached frame carries stays as it was. worlds bool [B] -> bool [B] the
        worlds repainted (the read is sure of at least one field of their prompt). A repainted world
        shows its prompt already: it is not held unsnapped or guided harder (`switching`), which
        would only blur it. The K/V are not touched: `recache` recomputes them."""
        book, cache = self.tokenizer.codebook, state.cache
        B, S, N, _ = cache.clean.shape
        held = state.tile_map.get("codes")
        codes = torch.cat([codebook.nearest(cache.clean, book).view(B, S * N), codebook.nearest(state.prev_clean, book),
                           *([] if held is None else [held.view(B, -1)])], 1)  # [B, (S + 1) N (+ map)]
        prompt = (state.prompt_pooled, state.prompt_tokens, state.prompt_mask)
        new, changed = self.restyle(codes, book, prompt, worlds)
        # only the repainted worlds' cached frames and previous frame change (others keep theirs,
        # snapped or not); an empty slot keeps its unread values
        write = changed[:, None] & (cache.slot_frame >= 0)  # [B, S]
        clean = torch.where(write[..., None, None], book[new[:, :S * N]].view_as(cache.clean), cache.clean)
        cache.latent.copy_(cache.latent + (clean - cache.clean))
        cache.clean.copy_(clean)
        write = (changed & (state.prev_level < 1))[:, None, None]  # [B, 1, 1]
        prev = torch.where(write, book[new[:, S * N:(S + 1) * N]], state.prev_clean)
        state.prev_latent = state.prev_latent + (prev - state.prev_clean)
        state.prev_clean = prev
        if held is not None:  # unknown cells (-1) stay unknown
            held.copy_(torch.where(changed[:, None], new[:, (S + 1) * N:], held.view(B, -1)).view_as(held))
        state.prompt_frame[changed] = state.frame[changed] - self.cfg.sampler.snap_hold
        return changed

    @torch.no_grad()
    def recache(self, state: WorldState, worlds: Sequence[int] | None = None) -> None:
        """Recompute the K/V of every cached frame (sink and window) of some worlds under their
        current prompt, in one block-causal pass over the frames the cache keeps (LongLive's
        KV re-cache). Memory stays as it is: it keeps no frames to read again. A frame whose
        previous frame has left the window reads "no previous frame" (level 1), as frame 0 does.
        Without a prompt change this reproduces the cache (until the first eviction; tested)."""
        cache = state.cache
        dev = state.frame.device
        idx = torch.arange(state.batch, device=dev) if worlds is None else torch.as_tensor(
            [int(w) for w in worlds], dtype=torch.long, device=dev)
        if idx.numel() == 0:
            return
        if int(idx.min()) < 0 or int(idx.max()) >= state.batch:
            raise ValueError(f"worlds must be in [0, {state.batch}), got {idx.tolist()}")
        c = self.cfg.memory.chunk_frames
        slot_frame = cache.slot_frame[idx]  # [B', s]
        order = torch.where(slot_frame >= 0, slot_frame, torch.iinfo(torch.long).max).argsort(dim=1)  # oldest first
        frames = slot_frame.gather(1, order)  # [B', s], -1 (empty) last
        b = idx[:, None]
        latent, level, action = cache.latent[b, order], cache.level[b, order], cache.action[b, order]
        # each frame's direct-path input: the last frame of the chunk before its own, if still cached
        want = (frames.clamp(min=0) // c) * c - 1  # [B', s]
        match = (frames[:, None, :] == want[:, :, None]) & (frames[:, None, :] >= 0) & (frames >= 0)[:, :, None]
        has, j = match.any(2), match.int().argmax(2)  # [B', s]
        prev_frame = lambda x: torch.where(has[..., None, None], x.gather(1, j[..., None, None].expand_as(x)), 0.0)  # noqa: E731
        prev_latent, prev_clean = prev_frame(latent), prev_frame(cache.clean[b, order])
        prev_level = torch.where(has, level.gather(1, j), 1.0)
        mem = self.policy.read(state.memory)
        if mem is not None:
            mem = type(mem)(mem.k[:, idx], mem.v[:, idx], None if mem.valid is None else mem.valid[idx])
        ctx = RecacheContext(self, frames, mem)
        prompt_ctx = self.dit.prompt_context(state.prompt_pooled[idx], state.prompt_tokens[idx], state.prompt_mask[idx])
        self.dit(latent, level, action, prompt_ctx, ctx, (prev_latent, prev_level, prev_clean))
        d, N = self.cfg.dit, self.cfg.tokenizer.tokens_per_frame
        B, s = frames.shape
        new_k = torch.stack(ctx.new_k).view(d.depth, B, d.heads, s, N, d.head_dim)  # pre-RoPE
        new_v = torch.stack(ctx.new_v).view(d.depth, B, d.heads, s, N, d.head_dim)
        empty = (frames < 0)[None, :, None, :, None, None]  # empty slots keep their (unread) values
        # advanced indices on dims 1 and 3 move to the front: [B', s, L, H, N, Dh] -> [L, B', H, s, N, Dh]
        old_k, old_v = (t[:, b, :, order].permute(2, 0, 3, 1, 4, 5) for t in (cache.k, cache.v))
        cache.write_kv(order, torch.where(empty, old_k, new_k), torch.where(empty, old_v, new_v), worlds=idx)

    @torch.no_grad()
    def reset_worlds(self, state: WorldState, worlds: Sequence[int], seeds: Sequence[int],
                     prompt: PromptLike = None) -> None:
        """Reset some worlds of a batch in place (vector-env autoreset); the others continue."""
        fresh = self.init_state(len(worlds), prompt, list(seeds))
        for i, b in enumerate(worlds):
            state.copy_world(b, fresh, i, self.policy.layer_major)

    def snapshot(self, state: WorldState) -> dict[str, torch.Tensor]:
        return state.snapshot()

    def restore(self, snap: dict[str, torch.Tensor]) -> WorldState:
        return WorldState.restore(snap, self.policy.sink_frames, self.cfg.memory.chunk_frames)

    def prompt_tensors(self, prompt: PromptLike, batch: int):
        """A prompt (see `init_state`) as the state keeps it: pooled [B, P], tokens [B, Lp, P] (the
        first dit.prompt_tokens), mask [B, Lp] bool."""
        d = self.cfg.dit
        P, L = d.prompt_dim, d.prompt_tokens
        dev = self.device
        pooled = torch.zeros(batch, P, device=dev)
        tokens = torch.zeros(batch, L, P, device=dev)
        mask = torch.zeros(batch, L, dtype=torch.bool, device=dev)
        if prompt is None:
            return pooled, tokens, mask
        if isinstance(prompt, torch.Tensor):
            p = prompt.to(dev, torch.float32)
            if p.dim() == 1:
                p = p[None].expand(batch, -1)
            if tuple(p.shape) != (batch, P):
                raise ValueError(f"prompt embedding must have shape [{P}] or [{batch}, {P}], got {list(prompt.shape)}")
            pooled[:] = p
            return pooled, tokens, mask
        items = [prompt] * batch if isinstance(prompt, PromptEmbedding) else list(prompt)
        if len(items) != batch or not all(isinstance(e, PromptEmbedding) for e in items):
            raise ValueError(f"prompt must be a PromptEmbedding or a list of {batch} of them")
        for b, e in enumerate(items):
            if e.pooled.shape != (P,):
                raise ValueError(f"prompt embedding width {tuple(e.pooled.shape)} != config dit.prompt_dim {P}")
            n = min(L, e.tokens.shape[0])
            if e.tokens.shape[0] > L and not self.dit.pooled:
                warnings.warn(f"prompt has {e.tokens.shape[0]} tokens; cross-attention keeps the first "
                              f"{L} (dit.prompt_tokens)", stacklevel=3)
            pooled[b] = e.pooled.to(dev)
            tokens[b, :n] = e.tokens[:n].to(dev)
            mask[b, :n] = e.mask[:n].to(dev)
        return pooled, tokens, mask

    def _used_slots(self, state: WorldState) -> int | None:
        """`full` attends only the slots filled so far (so its cost grows); others all slots."""
        if self.policy.evicts:
            return None
        done = int(state.frame.max())  # host sync: acceptable for the reference policy only
        if done + self.cfg.memory.chunk_frames > state.cache.slots:
            raise RuntimeError(f"policy 'full' holds {state.cache.slots} frames (memory.full_capacity); "
                               f"frame {done} does not fit")
        return done

    # -- streaming ----------------------------------------------------------------

    def check_action(self, action, batch: int) -> torch.Tensor:
        """-> int64 [B, c] on the model's device, or a clear error."""
        c, A = self.cfg.memory.chunk_frames, self.cfg.dit.num_actions
        if isinstance(action, np.ndarray):
            action = torch.from_numpy(action)
        if not isinstance(action, torch.Tensor):
            raise TypeError(f"action must be a torch.Tensor (int64 [B]), got {type(action).__name__}")
        if action.dtype != torch.int64:
            raise TypeError(f"action must have dtype torch.int64, got {action.dtype}")
        if action.dim() == 1 and c == 1:
            action = action[:, None]
        if tuple(action.shape) != (batch, c):
            want = f"[{batch}]" if c == 1 else f"[{batch}, {c}]"
            raise ValueError(f"action must have shape {want} (batch {batch}, chunk {c}), got {list(action.shape)}")
        lo, hi = int(action.min()), int(action.max())
        if lo < 0 or hi >= A:
            raise ValueError(f"action values must be in [0, {A - 1}] (dit.num_actions = {A}), got min {lo}, max {hi}")
        return action.to(self.device)

    def _noise(self, state: WorldState, shape: tuple[int, ...]) -> torch.Tensor:
        """Per-world noise [B, *shape] from each world's own generator (batch-independent)."""
        return torch.stack([torch.randn(shape, generator=g, device=self.device) for g in state.generators])

    def prepare(self, state: WorldState) -> StreamContext:
        return StreamContext(self, state)

    def denoise(self, state: WorldState, ctx: StreamContext, x: torch.Tensor, t: torch.Tensor,
                action: torch.Tensor, shift: torch.Tensor | None = None, with_copy: bool = False):
        """One DiT pass of the current chunk. x [B, c, N, C]; t, action [B, c] ->
        (prediction (velocity or x0, per dit.prediction), hidden); shift and with_copy as
        in `DiT.forward` (training stage 2)."""
        prompt_ctx = self.dit.prompt_context(state.prompt_pooled, state.prompt_tokens, state.prompt_mask)
        return self.dit(x, t, action, prompt_ctx, ctx, self.prev_input(state, x.shape[1]), with_copy, shift)

    def velocity(self, state: WorldState, ctx: StreamContext, x: torch.Tensor, t: torch.Tensor,
                 action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`denoise` with the prediction turned into a velocity: (v [B, c, N, C], hidden)."""
        pred, hidden = self.denoise(state, ctx, x, t, action)
        return sampler.to_velocity(pred, x, t, self.cfg.dit.prediction), hidden

    @staticmethod
    def prev_input(state: WorldState, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every frame of a chunk reads the last committed frame: ([B, c, N, C], [B, c], [B, c, N, C])."""
        latent, level, clean = state.prev_latent, state.prev_level, state.prev_clean
        return latent[:, None].expand(-1, c, -1, -1), level[:, None].expand(-1, c), clean[:, None].expand(-1, c, -1, -1)

    def step_latents(self, state: WorldState, action, steps: int | None = None):
        """Generate the next chunk's latent tokens and advance the state.

        Returns (x0 [B, c, N, C], reward [B, c], done_logit [B, c]). Runs with
        autograd if enabled (training stage 2); `step` wraps it in no_grad.
        """
        action = self.check_action(action, state.batch)
        ctx = self.prepare(state)
        x0 = self.sample(state, ctx, action, steps)
        hazard = self.walks_into_hazard(state, action)  # before commit: the state's frame is the one moved from
        reward, done = self.commit(state, ctx, x0, action)
        return x0, reward, self.hazard_done(done, hazard)

    def sample(self, state: WorldState, ctx: StreamContext, action: torch.Tensor, steps: int | None = None,
               noise: torch.Tensor | None = None) -> torch.Tensor:
        """Denoise the next chunk without changing the world: action int64 [B, c] (checked) ->
        x0 [B, c, N, C], snapped and copy-gated as the world keeps it. noise [B, c, N, C]: the
        starting noise (training's own generator), else each world's, x `sampler.temperature`.
        `commit` then makes it part of the world (or, teacher-forced, the true frame is
        committed instead)."""
        x0, hidden = self.denoise_chunk(state, ctx, action, steps, noise)
        return self.snap(x0, state, hidden, action)

    def denoise_chunk(self, state: WorldState, ctx: StreamContext, action: torch.Tensor, steps: int | None = None,
                      noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The sampler's Euler loop over the DiT -> (x0 [B, c, N, C] before the snap, the last
        pass's hidden states [B, c, N, D], the prompted pass's under guidance)."""
        steps = self.cfg.sampler.steps if steps is None else steps
        if not isinstance(steps, int) or not 1 <= steps <= 64:
            raise ValueError(f"steps must be an int in [1, 64], got {steps!r}")
        B = state.batch
        c, N, C = self.cfg.memory.chunk_frames, self.cfg.tokenizer.tokens_per_frame, self.cfg.tokenizer.token_dim
        prompt_ctx = self.dit.prompt_context(state.prompt_pooled, state.prompt_tokens, state.prompt_mask)
        prev, kind, g = self.prev_input(state, c), self.cfg.dit.prediction, self.guidance_scales(state)
        if g is not None:  # the empty prompt: zeros, as the text encoder gives "" (caption dropout)
            no_prompt = self.dit.prompt_context(*(torch.zeros_like(p) for p in (
                state.prompt_pooled, state.prompt_tokens, state.prompt_mask)))
        last = {}

        def v_fn(x: torch.Tensor, t: float) -> torch.Tensor:
            tt = torch.full((B, c), t, device=x.device)
            pred, last["hidden"] = self.dit(x, tt, action, prompt_ctx, ctx, prev)
            v = sampler.to_velocity(pred, x, t, kind)
            if g is not None:
                v = sampler.guide(v, sampler.to_velocity(self.dit(x, tt, action, no_prompt, ctx, prev)[0], x, t, kind), g)
            return v

        if noise is None:
            noise = self._noise(state, (c, N, C)) * self.cfg.sampler.temperature  # [B, c, N, C]
        return sampler.sample(v_fn, noise, steps), last["hidden"]

    def guidance_scales(self, state: WorldState) -> torch.Tensor | None:
        """Each world's classifier-free guidance scale [B, 1, 1, 1] (`sampler.switch_guidance`
        within `sampler.snap_hold` frames of a prompt change, else `sampler.guidance`), or None
        where no world is guided this frame: one DiT pass a step."""
        s = self.cfg.sampler
        if s.guidance == 1.0 and s.switch_scale == 1.0:
            return None
        g = torch.full((state.batch,), s.guidance, device=state.frame.device)
        if s.switch_scale != s.guidance:
            g = torch.where(self.switching(state), s.switch_scale, g)
            if bool((g == 1.0).all()):  # host sync, once a frame, only with switch guidance on
                return None
        return g[:, None, None, None]

    def switching(self, state: WorldState) -> torch.Tensor:
        """bool [B]: worlds whose prompt changed fewer than `sampler.snap_hold` frames ago (and that
        the restyle did not repaint: `restyle_worlds`)."""
        return state.frame - state.prompt_frame < self.cfg.sampler.snap_hold

    def snap(self, x0: torch.Tensor, state: WorldState, hidden: torch.Tensor | None = None,
             action: torch.Tensor | None = None) -> torch.Tensor:
        """A sampled chunk [B, c, N, C] as the world keeps it: every token snapped onto the
        tokenizer's codebook with `sampler.snap` (world/codebook.py), else as it is; with
        `sampler.snap_keep`, onto a code its neighbourhood showed the frame before where that
        is nearly as close (codebook.keep_neighbours); with dit.copy_gate and the sampling
        pass's hidden states [B, c, N, D], the tokens the gate copies are their neighbour's
        previous code exactly (world/copy_gate.py); with it and `sampler.tile_map`, the tokens a
        move brings into view take the code the world showed at their place (world/tile_map.py;
        action int64 [B, c], the keys, says the move where the frame cannot), and with
        `game.spawn` those the map does not know may become a collectible (world/spawn.py); with
        `game.passability`, a move key whose target tile blocks keeps the camera: every token but
        the fixed ones keeps its previous code in place (world/passability.py).

        A world whose prompt changed fewer than `sampler.snap_hold` frames ago is kept
        unsnapped and uncopied: the snap would pull each frame's small step towards the new
        prompt back onto the old look's codes, so a switch would never take (issue 15)."""
        s = self.cfg.sampler
        if not s.snap:
            return x0
        nearest = snapped = self.tokenizer.snap(x0)
        gate = hidden is not None and self.dit.copy_gate is not None and s.copy_gate <= 1.0
        book = self.tokenizer.codebook
        keeps_camera = self.passability is not None and action is not None
        prev_idx = codebook.nearest(state.prev_clean, book) if s.snap_keep or gate or keeps_camera else None
        prev = None if prev_idx is None else book[prev_idx]  # their codes
        if s.snap_keep:  # frame by frame: each keeps codes of the one before (the state's, then its own)
            grid, kept, last = self.cfg.tokenizer.grid_size, [], prev
            for i in range(x0.shape[1]):
                last = codebook.keep_neighbours(x0[:, i], snapped[:, i], last, grid, s.snap_keep)
                kept.append(last)
            snapped = torch.stack(kept, 1)
        move = None if action is None else self._moves(action.device)[action]  # [B, c] neighbour index
        stays = None  # [B, c, N]: tokens kept in place by a blocked move (game.passability)
        if keeps_camera:
            grid = self.cfg.tokenizer.grid_size
            blocked = self.passability.blocks(prev_idx, move, self.cfg.game.fixed_tokens(grid)[0], grid)
            blocked &= (state.prev_level < 1)[:, None]  # a world with no previous frame has no camera to keep
            move = torch.where(blocked, CENTRE, move)
            movable = tile_map.layout(grid, x0.device, tuple(self.cfg.game.fixed_tokens(grid)))[2]  # [N]
            stays = blocked[..., None] & movable
        if gate:
            choice = copy_gate.choose(self.dit.copy_gate(hidden, x0, prev, nearest), s.copy_gate,
                                      state.prev_level < 1)  # [B, c, N]
            if stays is not None:
                choice = torch.where(stays, CENTRE, choice)
            snapped = copy_gate.apply(choice, snapped, prev, self.cfg.tokenizer.grid_size)
            if s.tile_map:
                snapped = self._recall(state, snapped, choice, prev, prev_idx, move)
        elif stays is not None:
            snapped = torch.where(stays[..., None], prev[:, None], snapped)
        if not s.snap_hold:
            return snapped
        return torch.where(self.switching(state)[:, None, None, None], x0, snapped)

    def walks_into_hazard(self, state: WorldState, action: torch.Tensor) -> torch.Tensor | None:
        """`game.hazards`: bool [B, c], the key walks the player onto a tile that ends the episode
        in the world's last frame (world/passability.py; False where a world has no frame yet), or
        None without the table."""
        if self.passability is None or self.passability.ends is None:
            return None
        grid = self.cfg.tokenizer.grid_size
        prev_idx = codebook.nearest(state.prev_clean, self.tokenizer.codebook)  # [B, N]
        hazard = self.passability.hazard(prev_idx, self._moves(action.device)[action],
                                         self.cfg.game.fixed_tokens(grid)[0], grid)
        return hazard & (state.prev_level < 1)[:, None]

    @staticmethod
    def hazard_done(done_logit: torch.Tensor, hazard: torch.Tensor | None) -> torch.Tensor:
        """done_logit [B, c] with the steps onto a hazard (`walks_into_hazard`) certain to end."""
        if hazard is None:
            return done_logit
        return torch.where(hazard, torch.full_like(done_logit, HAZARD_LOGIT), done_logit)

    def _moves(self, device) -> torch.Tensor:
        """int64 [num_actions]: the 3x3 neighbour index of each action slot's move (CENTRE: none)."""
        return torch.tensor(move_neighbours(self.cfg.game.env, self.cfg.dit.num_actions), device=device)

    def _recall(self, state: WorldState, snapped: torch.Tensor, choice: torch.Tensor, prev: torch.Tensor,
                prev_idx: torch.Tensor, move: torch.Tensor | None) -> torch.Tensor:
        """`sampler.tile_map`: the tokens each frame of the chunk [B, c, N, C] brings into view take
        the code the world showed at their place (world/tile_map.py), or, with `game.spawn`, where it
        showed nothing, a collectible at the counted rate (world/spawn.py). choice [B, c, N] the copy
        gate's; prev [B, N, C] the previous frame's codes, prev_idx [B, N] their indices; move
        int64 [B, c] the neighbour index of the move each key asks for (None: no move asked)."""
        grid, book = self.cfg.tokenizer.grid_size, self.tokenizer.codebook
        fixed = self.cfg.game.fixed_tokens(grid)
        fresh = (state.prev_level >= 1) | self.switching(state)  # [B] no previous frame / a new prompt
        B, c = choice.shape[:2]
        key_move = torch.full((B, c), CENTRE, dtype=torch.long, device=choice.device) if move is None else move
        frames = []
        if self.spawn is not None:  # each world's seed: where its collectibles lie (world/spawn.py)
            seeds = torch.tensor([g.initial_seed() % 2**32 for g in state.generators], device=choice.device)
        for i in range(snapped.shape[1]):
            origin = state.tile_map["origin"].clone()
            held = tile_map.update(state.tile_map, prev, prev_idx, choice[:, i], key_move[:, i], fresh, grid, fixed)
            if self.spawn is not None:  # collectibles in the new ground the map does not know (world/spawn.py)
                new, pos = tile_map.entered(state.tile_map, origin, fresh, grid, fixed)
                if self.cfg.game.spawn_on == "drawn":
                    new = new & (choice[:, i] == copy_gate.DRAW)
                held = self.spawn.place(held, new, prev_idx, seeds, pos, self.cfg.game.spawn_gain)
            frames.append(torch.where((held >= 0)[..., None], book[held.clamp(min=0)], snapped[:, i]))
            if i + 1 < snapped.shape[1]:  # the chunk's next frame reads this one as its previous
                prev, fresh = frames[-1], torch.zeros_like(fresh)
                prev_idx = codebook.nearest(prev, book)
        return torch.stack(frames, 1)

    def commit(self, state: WorldState, ctx: StreamContext, x0: torch.Tensor, action: torch.Tensor,
               level: torch.Tensor | None = None, clean: torch.Tensor | None = None):
        """Context pass over the finished chunk, evict into memory, write its K/V in place.

        level: [B] noise level the caller already gave x0 (training stage 2), clean [B, c, N, C]
        the chunk before that noise (None: x0); level None adds `sampler.context_noise` here
        (inference)."""
        cfg, cache = self.cfg, state.cache
        B, c = x0.shape[:2]
        x_c = x0
        clean = x0 if clean is None else clean
        if level is None:
            level = torch.full((B,), cfg.sampler.context_noise, device=x0.device)
            if cfg.sampler.context_noise > 0:
                x_c = sampler.add_noise(x0, self._noise(state, tuple(x0.shape[1:])), level[:, None].expand(B, c))
        ctx.record, ctx.new_k, ctx.new_v = True, [], []
        _, hidden = self.denoise(state, ctx, x_c, level[:, None].expand(B, c), action)
        ctx.record = False
        reward, done = self.dit.heads(hidden)
        L, H, N, Dh = cfg.dit.depth, cfg.dit.heads, cfg.tokenizer.tokens_per_frame, cfg.dit.head_dim
        new_k = torch.stack(ctx.new_k).view(L, B, H, c, N, Dh)  # pre-RoPE
        new_v = torch.stack(ctx.new_v).view(L, B, H, c, N, Dh)
        slots = cache.slots_for(state.frame)  # [B, c]
        if self.policy.evicts:
            b = torch.arange(B, device=slots.device)
            for i in range(c):  # oldest window frames leave, one by one, into memory
                evict = (cache.slot_frame[b, slots[:, i]] >= 0) & (slots[:, i] >= cache.S)  # [B]
                k_ev, v_ev = cache.gather_frame(slots[:, i])  # [L, B, H, N, Dh] (last layer used by evolving)
                self._truncate_bptt(state, evict)
                state.memory = self.policy.update(state.memory, k_ev, v_ev, evict)
        frames = state.frame[:, None] + torch.arange(c, device=slots.device)
        cache.write(slots, frames, new_k, new_v, x_c.detach(), level[:, None].expand(B, c), action, clean.detach())
        state.frame = state.frame + c
        # the next chunk reads the frame as the cache saw it (noised like the context pass)
        state.prev_latent = x_c[:, -1].detach()
        state.prev_level = level.detach()
        state.prev_clean = clean[:, -1].detach()
        return reward, done

    def _truncate_bptt(self, state: WorldState, evict: torch.Tensor) -> None:
        """Cut the memory's graph before every `memory.bptt_updates`-th update (training only)."""
        if not torch.is_grad_enabled() or not bool(evict.any()):  # host sync: training path only
            return
        if state.updates_since_detach >= self.cfg.memory.bptt_updates:
            state.memory = {k: v.detach() for k, v in state.memory.items()}
            state.updates_since_detach = 0
        state.updates_since_detach += 1

    def outcome(self, reward: torch.Tensor, done_logit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The heads' raw outputs (any matching shapes) -> (reward paid, done probability).
        Classifier heads (dit.outcome_heads 'centre') pay 1 where the pickup is more likely than
        not, else 0; pooled heads pay their regressed value."""
        if self.cfg.dit.outcome_heads == "centre":
            reward = (reward > 0).to(reward.dtype)
        return reward, torch.sigmoid(done_logit)

    @torch.no_grad()
    def step(self, state: WorldState, action, steps: int | None = None) -> StepResult:
        """Play one chunk: action int64 [B] -> StepResult(frame uint8 [B, H, W, 3], reward [B], done_prob [B])."""
        x0, reward, done = self.step_latents(state, action, steps)
        B, c = x0.shape[:2]
        frames = self.tokenizer.decode(x0.reshape(B * c, *x0.shape[2:]))  # [B*c, H, W, 3]
        reward, done = self.outcome(reward, done)
        if c == 1:
            return StepResult(frames, reward[:, 0], done[:, 0])
        return StepResult(frames.view(B, c, *frames.shape[1:]), reward, done)

    # -- parallel (training stage 1) ------------------------------------------------

    def forward_parallel(self, x_noisy: torch.Tensor, t: torch.Tensor, action: torch.Tensor,
                         x_ctx: torch.Tensor | None, t_ctx: torch.Tensor | float = 0.0, prompt: PromptLike = None,
                         with_copy: bool = False, x_clean: torch.Tensor | None = None,
                         shift: torch.Tensor | None = None, start: torch.Tensor | None = None):
        """A clip at once, block-causal: x_noisy [B, T, N, C]; t, action [B, T]; start [B] int64:
        where each clip begins in its episode (the frames' index since reset, read with dit.clock;
        None: 0).

        With x_ctx [B, T, N, C] (teacher forcing): chunk b is denoised from x_noisy
        given the context frames x_ctx of earlier chunks (what streaming would have
        cached, at noise levels t_ctx) and the initial memory; the heads read the
        context stream. With x_ctx None (diffusion forcing): one stream, chunk b
        attends the earlier chunks of x_noisy itself at their levels t.
        With dit.prev_frame every frame of chunk b also reads the last context
        frame of chunk b-1 directly (chunk 0: none, level 1); x_clean [B, T, N, C] is the
        clip before any noise, which its copy reads with dit.prev_copy_clean (None: x_ctx).
        shift [B, T]: the camera's true moves for dit.prev_shift (`world.prev_frame.shift_labels`).
        Returns (the prediction for the noisy frames [B, T, N, C] (velocity or x0,
        per dit.prediction), reward [B, T], done_logit [B, T]); with_copy adds the copy
        path's x0 for the noisy frames [B, T, N, C] and its logits (the shift head's [B, T, 9], or the per-token mix's [B, T, N, 9])
        (None without dit.prev_frame / dit.prev_shift).
        """
        m, tk = self.cfg.memory, self.cfg.tokenizer
        B, T, N, C = x_noisy.shape
        if (N, C) != (tk.tokens_per_frame, tk.token_dim) or (x_ctx is not None and x_ctx.shape != x_noisy.shape):
            raise ValueError(f"x_noisy and x_ctx must both be [B, T, {tk.tokens_per_frame}, {tk.token_dim}], "
                             f"got {list(x_noisy.shape)} and {None if x_ctx is None else list(x_ctx.shape)}")
        c = m.chunk_frames
        fits = self.policy.sink_frames + self.policy.ring_frames + c
        if T % c != 0 or T > fits:
            raise ValueError(f"clip length {T} must be a multiple of chunk_frames={c} and <= {fits} "
                             f"(sink + window) for the parallel path")
        if action.shape != (B, T) or action.dtype != torch.int64:
            raise ValueError(f"action must be int64 [B, T] = [{B}, {T}], got {action.dtype} {list(action.shape)}")
        if not isinstance(t_ctx, torch.Tensor):
            t_ctx = torch.full((B, T), float(t_ctx), device=x_noisy.device)
        streams = 1 if x_ctx is None else 2
        if x_ctx is None:
            x_ctx, t_ctx = x_noisy, t  # the clip is its own context
        mem = self.policy.read(self.policy.init_state(B, x_noisy.device))
        ctx = ParallelContext(self.rotary, mem, T, N, c, B, x_noisy.device, streams=streams, start=start)
        pooled, tokens, mask = self.prompt_tensors(prompt, B)
        prompt_ctx = self.dit.prompt_context(pooled, tokens, mask)
        prev = None
        if self.dit.prev is not None:
            # chunk b reads frame b*c - 1 of the context stream: shift the clip by one chunk
            last = x_ctx[:, c - 1 :: c].repeat_interleave(c, dim=1)  # [B, T, N, C] last frame of each chunk
            lvl = t_ctx[:, c - 1 :: c].repeat_interleave(c, dim=1)  # [B, T]
            clean = (x_ctx if x_clean is None else x_clean)[:, c - 1 :: c].repeat_interleave(c, dim=1)
            prev = (torch.cat([torch.zeros_like(last[:, :c]), last[:, :-c]], 1),
                    torch.cat([torch.ones_like(lvl[:, :c]), lvl[:, :-c]], 1),
                    torch.cat([torch.zeros_like(clean[:, :c]), clean[:, :-c]], 1))
            prev = tuple(torch.cat([p] * streams, 1) for p in prev)
        if streams == 2:
            x, tt, aa = torch.cat([x_ctx, x_noisy], 1), torch.cat([t_ctx, t], 1), torch.cat([action, action], 1)
        else:
            x, tt, aa = x_noisy, t, action
        if shift is not None:
            shift = torch.cat([shift] * streams, 1)
        pred, hidden, copy, logits = self.dit(x, tt, aa, prompt_ctx, ctx, prev, with_copy=True, shift=shift)
        reward, done = self.dit.heads(hidden[:, :T])
        if with_copy:
            return (pred[:, -T:], reward, done, None if copy is None else copy[:, -T:],
                    None if logits is None else logits[:, -T:])
        return pred[:, -T:], reward, done

    # -- weights ----------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write model.safetensors + config.json into `directory` (no pickle)."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(d / WEIGHTS_FILE))
        (d / CONFIG_FILE).write_text(json.dumps(self.cfg.to_dict(), indent=2))
        return d

    @classmethod
    def load(cls, directory: str | Path, config: ModelConfig | None = None, device="cpu",
             policy: str | None = None) -> "WorldModel":
        """Load weights + the config saved beside them. A given `config` must match the weights.

        policy: run the same weights under another memory policy (window, sink, compress,
        evolving, full); memory weights the chosen policy lacks are dropped, weights it
        needs but the checkpoint lacks are an error.
        A bad file (damaged, truncated, another format, weights that do not fit the config,
        NaN/Inf) raises `world.checkpoint.CheckpointError` naming it; a missing one FileNotFoundError.
        """
        d = Path(directory)
        wpath = weights_path(d)
        if config is None:
            if not (d / CONFIG_FILE).is_file():
                raise FileNotFoundError(f"no {CONFIG_FILE} beside {wpath}; pass config= explicitly")
            config = read_config(d)
        tensors = read_safetensors(wpath)
        if policy is not None and policy != config.memory.policy:
            config = config.replace(memory={"policy": policy})
            keep = set(cls(config).state_dict())
            tensors = {k: v for k, v in tensors.items() if not k.startswith("policy.") or k in keep}
        model = cls(config)
        model.load_weights(tensors, source=str(wpath))
        return model.to(device)

    @classmethod
    def warm_start(cls, directory: str | Path, overrides: dict, device="cpu") -> tuple["WorldModel", list[str], list[str]]:
        """A checkpoint's weights in a changed architecture: the model of the checkpoint's config
        with `overrides` (sections as in `ModelConfig.replace`, e.g. {"dit": {"prev_shift": True}})
        gets every tensor whose name and shape it shares with the checkpoint; the rest keep their
        fresh initialisation. -> (model, names started fresh, checkpoint names dropped)."""
        wpath = weights_path(directory)
        model = cls(read_config(directory).replace(**overrides))
        own = model.state_dict()
        tensors = read_safetensors(wpath)
        shared = {k: v for k, v in tensors.items() if k in own and v.shape == own[k].shape}
        check_tensors(shared, {k: own[k] for k in shared}, str(wpath), "the changed model config")  # dtypes, NaN
        model.load_state_dict(shared, strict=False)
        return model.to(device), sorted(set(own) - set(shared)), sorted(set(tensors) - set(shared))

    def load_weights(self, tensors: dict[str, torch.Tensor], source: str = "weights") -> None:
        """Strict load, checked first (names, shapes, dtypes, finite): CheckpointError, model unchanged."""
        check_tensors(tensors, self.state_dict(), source,
                      f"the model config (preset {self.cfg.name!r}, policy {self.cfg.memory.policy!r})")
        self.load_state_dict(tensors, strict=True)

    @torch.no_grad()
    def randomize_(self, seed: int = 0, scale: float = 0.5) -> "WorldModel":
        """Give every weight (zero-initialised ones too) small random values.

        For tests and benchmarks of untrained paths: a DiT-initialised model
        predicts exactly zero velocity, which would make equality tests vacuous.
        Biases are perturbed around their init (the memory gate keeps b ~ +2). A codebook gets
        unit-variance codes, as a fitted one has (latents are rescaled to unit std), so the
        snap is a real choice between codes rather than all tokens landing on one zero code.
        """
        g = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(noise * scale / fan_in ** 0.5)
            else:
                p.add_(noise * 0.02)
        if self.cfg.tokenizer.codebook_size:
            self.tokenizer.codebook.copy_(torch.randn(self.tokenizer.codebook.shape, generator=g))
        return self


def weights_path(directory: str | Path) -> Path:
    """directory/model.safetensors, or FileNotFoundError naming the directory."""
    d = Path(directory)
    if not (d / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"no {WEIGHTS_FILE} in {d}")
    return d / WEIGHTS_FILE


def build_model(preset: str = "tiny", **overrides) -> WorldModel:
    """Shortcut: `build_model("tiny", memory={"policy": "sink"})`."""
    from .config import from_preset

    return WorldModel(from_preset(preset, **overrides))
