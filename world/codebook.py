"""The tile codebook: the latent tokens real frames are made of, and the snap onto them.

A tile world is drawn from a finite atlas, and one DiT token covers one tile
(`game.motion = "tile"`), so the frozen tokenizer's tokens of real frames fall
into tight clusters. k-means over those tokens gives a codebook (`fit`); the
sampler replaces every generated token by its nearest code (`snap`), the
"clamping trick" of Diffusion-LM (Li et al. 2022, mapping each predicted x0 to
the nearest word embedding). What it buys a few-step, undertrained model:
- the decoder only ever sees tokens it was trained on, so a blurred or
  out-of-range prediction comes out as a crisp real tile, not as a smear or
  the decoder's checkerboard;
- an error smaller than half the distance between codes is removed in the
  frame it appears, instead of being copied forward by the previous-frame path
  and growing frame after frame (the runaway and the fade of issue 14).
The price is the quantisation error of the round trip (docs/RESULTS.md gives
the tokenizer ceiling with and without it).
"""

from __future__ import annotations

import torch

from .prev_frame import inside, neighbourhood

CHUNK = 8_192  # tokens per distance block in `fit`: [CHUNK, K] floats stay ~128 MB at K = 4096
SEED_SAMPLE = 65_536  # tokens the k-means++ seeding draws from (it is sequential in the codes)


def nearest(tokens: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """tokens [..., C], codes [K, C] -> int64 [...] the index of each token's nearest code (L2)."""
    flat = tokens.reshape(-1, tokens.shape[-1])  # [M, C]
    # |z - c|^2 = |z|^2 - 2 z.c + |c|^2; |z|^2 is the same for every code of a token. One fused
    # addmm: a separate subtraction over the [M, K] block cost more than the matmul itself.
    dist = torch.addmm((codes * codes).sum(-1), flat, codes.T, alpha=-2.0)  # [M, K]
    return dist.argmin(-1).view(tokens.shape[:-1])


def snap(tokens: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """tokens [..., C] -> the same shape, every token replaced by its nearest code."""
    return codes[nearest(tokens, codes)]


def keep_neighbours(x: torch.Tensor, snapped: torch.Tensor, prev: torch.Tensor, grid: int,
                    margin: float) -> torch.Tensor:
    """The snap with hysteresis. x [B, N, C] a sampled frame, snapped [B, N, C] its nearest
    codes, prev [B, N, C] the previous frame's codes (row-major grid x grid tokens) ->
    [B, N, C]: each token takes the closest of its 3x3 neighbours' previous codes when that one
    is within (1 + margin) x its squared distance to its nearest code, else its nearest code.
    One-token moves of the camera bring a neighbour's tile into place, so a token the model
    drew halfway between that tile and another keeps the tile the world already showed."""
    C = x.shape[-1]
    nb = neighbourhood(prev[:, None], grid)[:, 0]  # [B, N, 9, C], zeros beyond the edge
    d_nb = (x[:, :, None] - nb).pow(2).sum(-1).masked_fill(~inside(grid, x.device), float("inf"))  # [B, N, 9]
    d_min, j = d_nb.min(-1)  # [B, N]
    kept = nb.gather(2, j[:, :, None, None].expand(-1, -1, 1, C))[:, :, 0]  # [B, N, C]
    near = d_min <= (1.0 + margin) * (x - snapped).pow(2).sum(-1)  # [B, N]
    return torch.where(near[..., None], kept, snapped)


@torch.no_grad()
def fit(tokens: torch.Tensor, size: int, iters: int = 15, seed: int = 0) -> torch.Tensor:
    """k-means (Lloyd) over tokens [M, C] -> codes [size, C], deterministic for a seed.

    Starts from k-means++ seeds (Arthur & Vassilvitskii 2007), so rare tiles get codes of their
    own instead of two codes splitting a common one; a code that loses all its tokens is
    re-seeded on a random token (a dead code would still be a snap target)."""
    M = tokens.shape[0]
    if M < size:
        raise ValueError(f"a codebook of {size} codes needs at least {size} tokens to fit, got {M}")
    gen = torch.Generator().manual_seed(seed)
    x = tokens.float().cpu()
    codes = seed_codes(x[torch.randperm(M, generator=gen)[:SEED_SAMPLE]], size, gen)  # [K, C]
    for _ in range(iters):
        assign = torch.cat([nearest(x[i:i + CHUNK], codes) for i in range(0, M, CHUNK)])  # [M]
        sums = torch.zeros_like(codes).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=size)  # [K]
        dead = counts == 0
        codes = sums / counts.clamp_min(1)[:, None].float()
        if bool(dead.any()):
            codes[dead] = x[torch.randint(M, (int(dead.sum()),), generator=gen)]
    return codes


def seed_codes(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++: each next code is a token drawn with probability ~ its squared distance to
    the codes so far. x [M, C] -> [size, C]."""
    codes = x.new_empty(size, x.shape[1])
    codes[0] = x[torch.randint(len(x), (1,), generator=gen)]
    d2 = (x - codes[0]).pow(2).sum(-1)  # [M] squared distance to the nearest code so far
    for k in range(1, size):
        if float(d2.sum()) > 0:
            i = torch.multinomial(d2, 1, generator=gen)
        else:  # every token sits on a code already: the rest are copies
            i = torch.randint(len(x), (1,), generator=gen)
        codes[k] = x[i]
        d2 = torch.minimum(d2, (x - codes[k]).pow(2).sum(-1))
    return codes
