"""Collectibles in new ground (`game.spawn`): counted from the recordings, placed where a move brings
ground into view.

The DiT draws the edge a move brings in as the mean of what could be there: bare ground. A gem
lies on 1.5% of the teacher's ground tiles, far too rare to survive a mean, so the dream's new
ground has none, and an agent trained in World-v0 finds almost nothing to learn from (issue 17:
a scripted gem seeker earned 9% of its teacher gems there, and saw a gem in 4% of the frames
where the teacher shows one in 59%).

What an agent collects, and how often it lies next to each tile, is in the recordings. `fit`
reads the move steps `passability.count` tallies: a code walked onto whose step paid a reward
more often than not (pooled with its nearest codes, as passability pools) is a collectible, and
over every pair of neighbouring tokens of those frames, `rate` [K] is P(the neighbour of code k
is a collectible) and `code` [K] the collectible most often next to k (a gem on that biome's
ground). At play time (`WorldModel._recall`, with `sampler.tile_map`) a token that came into
view from beyond the frame, whose place the map does not know and whose code the copy gate
draws (`game.spawn_on`), becomes `code[inward]` with probability `rate[inward]` (times
`game.spawn_gain`, envs/spawn_gain.py), inward being the code the previous
frame showed at its screen place (its neighbour one token in). The draw is a hash of the world's
seed and the token's world position (`place_uniform`), so a place far from the map's reach gets
the same answer when the player comes back to it. A game that pays for nothing walked onto
(Crafter's achievements) counts no collectible and places nothing.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .passability import look_alikes
from .prev_frame import offset

PAID = 0.5
"""A code whose walked-onto steps paid more often than this is a collectible."""
_MASK32 = 0xFFFFFFFF


class Spawn(nn.Module):
    """The table: rate [K] float, P(a neighbour of code k is a collectible); code [K] int64, the
    collectible most often next to k (weights of the checkpoint)."""

    def __init__(self, num_codes: int):
        super().__init__()
        self.register_buffer("rate", torch.zeros(num_codes))
        self.register_buffer("code", torch.zeros(num_codes, dtype=torch.long))

    @torch.no_grad()
    def fit(self, walked: torch.Tensor, paid: torch.Tensor, pairs: torch.Tensor, book: torch.Tensor) -> "Spawn":
        """walked int64 [S] the code walked onto at each recorded move step, paid bool [S] whether that
        step paid; pairs int64 [K, K] how often code b lay next to code a (`neighbour_pairs`); book
        [K, C] the codebook -> self, filled in place."""
        K = len(book)
        pool = look_alikes(book)  # [K, POOL], pooled as passability pools
        n = torch.bincount(walked, minlength=K).double()
        p = torch.bincount(walked, weights=paid.double(), minlength=K)
        collectible = (n > 0) & (p[pool].sum(1) > PAID * n[pool].sum(1))  # [K]
        self.rate.zero_()
        self.code.zero_()
        if collectible.any():
            next_to = pairs.double()[:, collectible]  # [K, collectibles]
            self.rate.copy_((next_to.sum(1) / pairs.sum(1).clamp(min=1)).float())
            self.code.copy_(collectible.nonzero().flatten()[next_to.argmax(1)])
        return self

    def collectibles(self) -> int:
        """How many codes are placed somewhere."""
        return int(torch.unique(self.code[self.rate > 0]).numel())

    def place(self, held: torch.Tensor, new: torch.Tensor, inward: torch.Tensor, seed: torch.Tensor,
              pos: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """held int64 [B, N] the map's recall (-1 unknown); new bool [B, N] tokens that came into view
        from beyond the frame and may take one (`game.spawn_on`); inward int64 [B, N] the previous
        frame's code at each token's screen place; seed int64 [B] each world's seed; pos int64 [B, N, 2]
        world positions; gain the rate's factor (`game.spawn_gain`) -> held with the placed
        collectibles written in. A place that takes one at some gain takes it at every larger gain."""
        rate = (self.rate[inward] * gain).clamp(max=1.0)
        hit = new & (held < 0) & (place_uniform(seed, pos) < rate)
        return torch.where(hit, self.code[inward], held)


def neighbour_pairs(idx: torch.Tensor, grid: int, K: int) -> torch.Tensor:
    """idx int64 [S, N] code indices of frames -> int64 [K, K]: how often code b lay one token
    up, down, left or right of code a."""
    frames = idx.view(-1, grid, grid)
    out = torch.zeros(K * K, dtype=torch.long)
    for k in (1, 3, 5, 7):
        dy, dx = offset(k)
        a = frames[:, max(0, -dy): grid + min(0, -dy), max(0, -dx): grid + min(0, -dx)]
        b = frames[:, max(0, dy): grid + min(0, dy), max(0, dx): grid + min(0, dx)]
        out += torch.bincount((a.reshape(-1) * K + b.reshape(-1)).cpu(), minlength=K * K)
    return out.view(K, K)


def _mix(h: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash step on int64 values in [0, 2**32) (stays below 2**63)."""
    h = ((h >> 16) ^ h) * 0x45D9F3B & _MASK32
    h = ((h >> 16) ^ h) * 0x45D9F3B & _MASK32
    return (h >> 16) ^ h


def place_uniform(seed: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """seed int64 [B], pos int64 [B, N, 2] world positions -> float [B, N] in [0, 1), fixed by
    (seed, y, x): the same place of the same world always draws the same number."""
    h = _mix(seed[:, None] & _MASK32)
    h = _mix(h ^ (pos[..., 0] & _MASK32))
    h = _mix(h ^ (pos[..., 1] & _MASK32))
    return h.double().div(2.0**32).float()
