"""Causal video DiT over frame tokens (DiT adaLN-Zero + block-causal attention).

Each block: adaLN-Zero modulation from (diffusion timestep + the frame's
action [+ pooled prompt for `tiny`]), self-attention with 3D RoPE, optional
cross-attention to the prompt tokens (small/base), and an MLP. Modulations and
the final projection start at zero, so a fresh model is the identity map.

Attention itself is delegated to a context object, which is how one model has
two forward paths:
- `StreamContext` (world/model.py): the current chunk's queries attend over
  [cached sink + window frames | memory tokens | the chunk itself];
- `ParallelContext` (below): a whole clip at once, block-causal, for training
  stage 1 (teacher forcing with clean context frames).
Both rotate keys with the same recipe ids, so they agree to float rounding.

With `dit.prev_frame` the DiT also reads the previous frame directly
(world/prev_frame.py) and predicts the clean latent x0; a learned absolute
position embedding per token lets a token know where in the view it is (the
player is always drawn on the same tile).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .copy_gate import CopyGate
from .memory import MemoryRead
from .prev_frame import PrevFrame, neighbourhood
from .rope import Rotary3D


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [B, F, N, D]; shift, scale [B, F, 1, D]."""
    return x * (1 + scale) + shift


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000) -> MLP."""

    def __init__(self, dim: int, freq_dim: int = 128):
        super().__init__()
        half = freq_dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(half) / half), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t[..., None].float() * 1000.0 * self.freqs  # [..., freq_dim/2]
        return self.mlp(torch.cat([args.cos(), args.sin()], -1))


class ClockEmbedder(nn.Module):
    """A frame's index since its world began, int64 [...] -> [..., D] (`dit.clock`).

    One learned vector per phase of every period 2..`periods`, summed ("a counter ticks every
    26 steps" is one row, read at every 26th frame however long the world runs; a sum, not a
    mean, so that one row moves the condition as fast as any other weight learns), plus
    sin/cos of a few longer periods through a linear map (a day's slow light). Both start at
    zero, so a warm-started checkpoint is unchanged until it learns."""

    LONG = (128, 256, 512, 1024, 2048)

    def __init__(self, dim: int, periods: int = 64):
        super().__init__()
        p = torch.arange(2, periods + 1)
        self.register_buffer("periods", p, persistent=False)
        self.register_buffer("offsets", torch.cumsum(p, 0) - p, persistent=False)  # first row of each period
        self.register_buffer("long", torch.tensor(self.LONG), persistent=False)
        self.phase = nn.Embedding(int(p.sum()), dim)
        self.long_proj = nn.Linear(2 * len(self.LONG), dim)
        for w in (self.phase.weight, self.long_proj.weight, self.long_proj.bias):
            nn.init.zeros_(w)

    def forward(self, clock: torch.Tensor) -> torch.Tensor:
        rows = self.offsets + clock[..., None] % self.periods  # [..., P]
        angle = (clock[..., None] % self.long).float() * (2 * math.pi / self.long)  # exact at any length
        return self.phase(rows).sum(-2) + self.long_proj(torch.cat([angle.cos(), angle.sin()], -1))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.dit
        D = d.dim
        self.heads, self.head_dim = d.heads, d.head_dim
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)
        self.cross = d.prompt_mode == "cross_attention"
        if self.cross:
            self.norm_x = nn.LayerNorm(D, eps=1e-6)
            self.x_q = nn.Linear(D, D)
            self.x_kv = nn.Linear(D, 2 * D)
            self.x_proj = nn.Linear(D, D)
        self.norm2 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        hidden = int(D * d.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(D, hidden), nn.GELU(), nn.Linear(hidden, D))  # exact GELU: 2x faster than tanh on CPU
        self.ada = nn.Linear(D, 6 * D)
        nn.init.zeros_(self.ada.weight)  # adaLN-Zero: the block starts as identity
        nn.init.zeros_(self.ada.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, ctx, layer: int,
                prompt: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """x [B, F, N, D]; c [B, F, D] (already SiLU'd); prompt: (tokens [B, P, D], mask [B, P])."""
        B, Fr, N, D = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c)[:, :, None].chunk(6, dim=-1)  # [B, F, 1, D]
        h = modulate(self.norm1(x), shift1, scale1).reshape(B, Fr * N, D)
        q, k, v = self.qkv(h).view(B, Fr * N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [B, H, T, Dh]
        a = ctx.attend(layer, q, k, v)  # [B, H, T, Dh]
        a = self.proj(a.transpose(1, 2).reshape(B, Fr, N, D))
        x = x + gate1 * a
        if self.cross:
            x = x + self._cross(x, prompt)
        h = modulate(self.norm2(x), shift2, scale2)
        return x + gate2 * self.mlp(h)

    def _cross(self, x: torch.Tensor, prompt: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        tokens, mask = prompt  # [B, P, D], [B, P]
        B, Fr, N, D = x.shape
        q = self.x_q(self.norm_x(x)).view(B, Fr * N, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.x_kv(tokens).view(B, -1, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        return self.x_proj(a.transpose(1, 2).reshape(B, Fr, N, D))


class DiT(nn.Module):
    """Velocity predictor v(x_t, t | action, prompt, context) for frame tokens."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, tk = cfg.dit, cfg.tokenizer
        D = d.dim
        self.cfg = cfg
        self.in_proj = nn.Linear(tk.token_dim, D)
        self.t_embed = TimestepEmbedder(D)
        self.a_embed = nn.Embedding(d.num_actions, D)
        nn.init.normal_(self.a_embed.weight, std=0.02)
        self.pooled = d.prompt_mode == "pooled"
        self.prompt_proj = nn.Linear(d.prompt_dim, D)
        if not self.pooled:
            self.prompt_null = nn.Parameter(torch.zeros(1, 1, D))  # always-valid key: empty prompts work
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(d.depth))
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(D, 2 * D)
        self.out = nn.Linear(D, tk.token_dim)
        for m in (self.ada_out, self.out):  # zero-init final layer (DiT)
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
        self.grid = tk.grid_size
        # The player's token (the teacher: the centre, whose 3x3 also covers the 2x2 a smooth-motion
        # player straddles; Crafter: row 3, column 4) and the 3x3 around it.
        player = []
        if d.outcome_heads == "centre" or d.player_surroundings:
            py, px = divmod(cfg.game.fixed_tokens(self.grid)[0], self.grid)
            player = [(py + dy) * self.grid + px + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        self.centre = player if d.outcome_heads == "centre" else []  # token indices the heads read beside the mean

        def head() -> nn.Module:
            if not self.centre:
                return nn.Linear(D, 1)
            return nn.Sequential(nn.Linear(D * (1 + len(self.centre)), D), nn.SiLU(), nn.Linear(D, 1))

        self.reward_head, self.done_head = head(), head()
        self.surroundings = player if d.player_surroundings else []  # tokens read into the condition
        if self.surroundings:
            self.surround = nn.Parameter(torch.zeros(d.num_actions, len(player) * tk.token_dim, D))  # [A, 9C, D]
        self.prev = None
        self.copy_clean = d.prev_copy_clean
        if d.prev_frame:
            self.prev = PrevFrame(tk.grid_size, tk.token_dim, D, d.num_actions, global_shift=d.prev_shift)
            self.prev_level = TimestepEmbedder(D)  # noise level of the previous frame
            self.pos_embed = nn.Parameter(torch.randn(tk.tokens_per_frame, D) * 0.02)  # [N, D]
        self.copy_gate = CopyGate(tk.grid_size, tk.token_dim, D) if d.copy_gate else None
        self.clock = ClockEmbedder(D) if d.clock else None

    def prompt_context(self, pooled: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor):
        """Project the prompt once per step. pooled [B, P]; tokens [B, L, P]; mask [B, L]."""
        if self.pooled:
            return self.prompt_proj(pooled)  # [B, D]
        B = tokens.shape[0]
        t = torch.cat([self.prompt_null.expand(B, 1, -1), self.prompt_proj(tokens)], 1)  # [B, 1+L, D]
        m = torch.cat([torch.ones_like(mask[:, :1]), mask], 1)
        return t, m

    def forward(self, x: torch.Tensor, t: torch.Tensor, action: torch.Tensor, prompt_ctx, ctx,
                prev: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None, with_copy: bool = False,
                shift: torch.Tensor | None = None):
        """x [B, F, N, token_dim]; t [B, F]; action [B, F];
        prev: (the previous frame's latent [B, F, N, token_dim], its noise level [B, F], the
        same latent before its noise [B, F, N, token_dim]), needed with dit.prev_frame;
        shift: with dit.prev_shift, the camera's true move per frame (int64 [B, F], -1:
        unknown; training), else the shift head's argmax is copied
        ctx: the attention context; with dit.clock its `clock` (int64 [B, F], each frame's
        index since its world began) is read too
        -> (prediction [B, F, N, token_dim] (velocity or x0, per
        dit.prediction), hidden [B, F, N, D]); with_copy adds the copy path's own x0
        [B, F, N, token_dim] and the mix's logits [B, F, N, 9] or shift head's [B, F, 9] (None without
        dit.prev_frame / dit.prev_shift), for their auxiliary losses."""
        c = self.t_embed(t) + self.a_embed(action)  # [B, F, D]
        if self.clock is not None:
            c = c + self.clock(ctx.clock)
        nb = None
        if self.prev is not None:
            if prev is None:
                raise ValueError("this DiT reads the previous frame (dit.prev_frame): pass prev=(latent, level, clean)")
            nb = neighbourhood(prev[0], self.grid)  # [B, F, N, 9, C]
            nb_copy = neighbourhood(prev[2], self.grid) if self.copy_clean else nb
            c = c + self.prev_level(prev[1])
            if self.surroundings:  # [B, F, 9C] @ [B, F, 9C, D]: what lies around the player, read per action
                around = prev[0][:, :, self.surroundings].flatten(2)
                c = c + torch.matmul(around[:, :, None], self.surround[action])[:, :, 0]
        if self.pooled:
            c = c + prompt_ctx[:, None]
            prompt = None
        else:
            prompt = prompt_ctx
        c = F.silu(c)
        h = self.in_proj(x)  # [B, F, N, D]
        if nb is not None:
            h = h + self.prev.embed(nb, action) + self.pos_embed
        for i, block in enumerate(self.blocks):
            h = block(h, c, ctx, i, prompt)
        out_shift, out_scale = self.ada_out(c)[:, :, None].chunk(2, dim=-1)
        h = modulate(self.norm_out(h), out_shift, out_scale)
        out = self.out(h)
        copy = shift_logits = None
        if nb is not None:
            copy, shift_logits = self.prev.copy(nb_copy, action, h, shift)
            out = out + copy
        return (out, h, copy, shift_logits) if with_copy else (out, h)

    def heads(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden [B, F, N, D] -> reward [B, F] (a value, or with dit.outcome_heads 'centre' a
        pickup logit), done logit [B, F]."""
        read = hidden.mean(dim=2)  # [B, F, D]
        if self.centre:
            read = torch.cat([read, hidden[:, :, self.centre].flatten(2)], -1)  # [B, F, 10 D]
        return self.reward_head(read)[..., 0], self.done_head(read)[..., 0]


class ParallelContext:
    """Block-causal attention over a clip for training stage 1, in one of two layouts.

    streams=2, teacher forcing with a clean copy: the sequence holds the
    context stream (what the streaming context pass writes to the cache) and
    the noisy stream (what a denoising pass sees). Query chunk b of the context
    stream attends [memory | context chunks <= b]; of the noisy stream
    [memory | context chunks < b | its own noisy chunk]: exactly what streaming
    sees when the clip fits in the window.
    streams=1, diffusion forcing: one copy of the clip, every frame at its own
    noise level; chunk b attends [memory | chunks <= b]. Half the tokens and a
    quarter of the attention; the context a frame sees is noisy at levels the
    model is told, and streaming (clean context) is one point of that range.
    Keys are rotated once per query chunk with the ids the recipe gives from
    that chunk's newest frame.
    """

    def __init__(self, rotary: Rotary3D, memory: MemoryRead | None, frames: int, tokens: int,
                 chunk: int, batch: int, device=None, streams: int = 2, start: torch.Tensor | None = None):
        """start [B] int64: each clip's first frame's index since its world began (None: 0)."""
        if streams not in (1, 2):
            raise ValueError(f"streams must be 1 or 2, got {streams}")
        first = torch.zeros(batch, dtype=torch.long, device=device) if start is None else start
        self.clock = (first[:, None] + torch.arange(frames, device=device)).repeat(1, streams)  # [B, streams*T]
        recipe = rotary.recipe
        T, N, c = frames, tokens, chunk
        nc = T // c
        dev = device
        f_b = (torch.arange(nc, device=dev) * c + c - 1)[:, None]  # newest frame per query chunk [nc, 1]
        j = torch.arange(T, device=dev)[None].expand(nc, T)
        j = torch.minimum(j, f_b)  # future frames are masked; keep their ids in the table's range
        frame_ids = recipe.frame_ids(f_b, j)  # [nc, T]
        cos_f, sin_f = rotary.cos_sin(frame_ids)  # [nc, T*N, Dh]
        # queries: chunk b rotates its own frames with the ids seen from f_b
        qi = torch.arange(nc, device=dev)
        q_cos = cos_f.view(nc, T, N, -1)[qi[:, None], qi[:, None] * c + torch.arange(c, device=dev)]
        q_sin = sin_f.view(nc, T, N, -1)[qi[:, None], qi[:, None] * c + torch.arange(c, device=dev)]
        self.q_cos, self.q_sin = q_cos.reshape(nc, c * N, -1), q_sin.reshape(nc, c * N, -1)  # [nc, cN, Dh]
        k_cos, k_sin = [cos_f] * streams, [sin_f] * streams  # both copies share ids
        self.memory = memory
        M = 0
        if memory is not None:
            M = memory.k.shape[-2]
            mc, ms = rotary.cos_sin(recipe.memory_ids(f_b), memory=True)  # [nc, M, Dh]
            k_cos, k_sin = [mc] + k_cos, [ms] + k_sin
        self.k_cos, self.k_sin = torch.cat(k_cos, 1), torch.cat(k_sin, 1)  # [nc, M + streams*TN, Dh]
        # mask [B, nc, streams*cN, M + streams*TN]: rows = (context chunk b, noisy chunk b) or (chunk b)
        chunk_of_key = torch.arange(T, device=dev).repeat_interleave(N) // c  # [TN]
        b = qi[:, None]
        if streams == 2:
            ctx_rows = torch.cat([chunk_of_key[None] <= b, torch.zeros(nc, T * N, dtype=torch.bool, device=dev)], 1)
            noisy_rows = torch.cat([chunk_of_key[None] < b, chunk_of_key[None] == b], 1)
            rows = torch.stack([ctx_rows, noisy_rows], 1)
        else:
            rows = (chunk_of_key[None] <= b)[:, None]
        rows = rows[:, :, None].expand(nc, streams, c * N, streams * T * N)
        mem_valid = torch.ones(batch, M, dtype=torch.bool, device=dev)
        if memory is not None and memory.valid is not None:
            mem_valid = memory.valid
        allowed = torch.cat([mem_valid[:, None, None, None].expand(batch, nc, streams, c * N, M),
                             rows[None].expand(batch, nc, streams, c * N, streams * T * N)], -1)
        # Additive float mask, built once per clip and shared by every layer and head: a bool
        # mask is converted (and copied per head) inside SDPA on every call, which cost more
        # than the attention itself. Every row sees at least its own frame, so no row is all -inf.
        self.mask = torch.zeros(allowed.shape, device=dev).masked_fill_(~allowed, float("-inf"))
        self.mask = self.mask.reshape(batch * nc, 1, streams * c * N, M + streams * T * N)  # [B*nc, 1, scN, K]
        self.T, self.N, self.c, self.nc, self.streams = T, N, c, nc, streams

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k, v [B, H, s*TN, Dh] (s streams: context then noisy) -> [B, H, s*TN, Dh]."""
        B, H, _, Dh = q.shape
        s, nc, cN, TN = self.streams, self.nc, self.c * self.N, self.T * self.N
        # queries grouped by chunk: [B, H, nc, s*cN, Dh] (context rows then noisy rows)
        qc = q.view(B, H, s, nc, cN, Dh).transpose(2, 3)
        qc = apply_rope5(qc, self.q_cos[:, None], self.q_sin[:, None])
        qc = qc.reshape(B, H, nc, s * cN, Dh)
        if self.memory is not None:
            mk = self.memory.k[layer if self.memory.k.shape[0] > 1 else 0]  # [B, H, M, Dh]
            mv = self.memory.v[layer if self.memory.v.shape[0] > 1 else 0]
            k, v = torch.cat([mk, k], 2), torch.cat([mv, v], 2)
        kc = apply_rope5(k[:, :, None].expand(B, H, nc, -1, Dh), self.k_cos, self.k_sin)  # [B, H, nc, K, Dh]
        K = kc.shape[3]
        # Fold the chunk axis into the batch axis: 4-D inputs take the fused CPU attention
        # kernel (5-D ones fall back to the math path) and the mask broadcasts over heads.
        q4 = qc.transpose(1, 2).reshape(B * nc, H, s * cN, Dh)
        k4 = kc.transpose(1, 2).reshape(B * nc, H, K, Dh)
        v4 = v[:, None].expand(B, nc, H, K, Dh).reshape(B * nc, H, K, Dh)
        out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=self.mask)  # [B*nc, H, s*cN, Dh]
        out = out.view(B, nc, H, s, cN, Dh).permute(0, 2, 3, 1, 4, 5)  # [B, H, s, nc, cN, Dh]
        return out.reshape(B, H, s * TN, Dh)


def apply_rope5(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE with cos/sin broadcast against x directly (no head axis inserted)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], -1) * sin
