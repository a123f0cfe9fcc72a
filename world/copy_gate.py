"""The copy gate: per token, copy a tile of the previous frame exactly, or draw a new one.

A tile world changes little from one frame to the next: most tokens are a tile
the previous frame showed, at their own place or one token over (the camera's
tile step). The DiT's x0 for such a token is a mix of its neighbours plus a
residual, and the snap reads a mix that drifted off the code as another tile:
each frame loses a share of the trees, rocks and gems, and by horizon 16 the
world is bare ground (issue 14). The gate makes "this token is a copy" a
decision: a small head reads the token's final hidden state, its 9 neighbours'
previous codes and its own drawn code, how far the DiT's x0 lies from each of
them and how well each one-token move explains the whole frame, and picks one
of 10 choices, "copy neighbour k" (k = 0..8, row-major, 4 = in place) or
"draw" (the DiT's sample, snapped as before).
A copied token is the neighbour's code itself, so a tile that is copied is
never lost.

Trained on the frozen world model (`train --s2-train gate`) on frames sampled
as at play time: a token's correct choices are the candidates (its 9
neighbours' previous codes, the code the DiT drew) nearest the recorded
frame's latent (`targets`): "draw" where the DiT's tile is the better one (the
edge a move brings in, the player, weather that changes a tile in place, a gem
picked up), a copy where the world already showed the tile the DiT is losing.
Several neighbours of a uniform field tie, so each choice is its own yes/no
question, "is this one right?" (a sigmoid per choice, `gate_loss`), and a copy
is taken where the likeliest one is sure enough (`choose`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .prev_frame import NEIGHBOURS, inside, neighbourhood

DRAW = NEIGHBOURS  # the 10th choice: the DiT's own sample
CHOICES = NEIGHBOURS + 1
# A candidate counts as right within (1 + TIE_SLACK) x the best one's squared distance to the
# truth + TIE_ABS (per latent value). The codebook holds look-alike variants of a tile: its
# codes' nearest other code lies a median 0.05 away (tiny's, on recorded frames; a token's own
# quantisation error: median 0.012, p90 0.065), so a smaller gap is a variant, not another tile.
TIE_SLACK, TIE_ABS = 0.25, 0.05
DECISIVE_WEIGHT = 10.0  # `gate_loss`'s weight on tokens where only a copy, or only the draw, is right


class CopyGate(nn.Module):
    def __init__(self, grid: int, token_dim: int, dim: int, hidden: int = 64):
        super().__init__()
        self.grid = grid
        feats = dim + 2 * NEIGHBOURS + 1 + (NEIGHBOURS + 1) * token_dim
        self.net = nn.Sequential(nn.Linear(feats, hidden), nn.SiLU(), nn.Linear(hidden, CHOICES))
        self.register_buffer("inside", inside(grid), persistent=False)

    def forward(self, hidden: torch.Tensor, x0: torch.Tensor, prev_codes: torch.Tensor,
                snapped: torch.Tensor) -> torch.Tensor:
        """hidden [B, F, N, D] the DiT's final hidden states; x0 [B, F, N, C] its prediction;
        prev_codes [B, N, C] the previous frame's tokens (codes); snapped [B, F, N, C] x0's
        nearest codes -> logits [B, F, N, 10], each the log-odds that the choice is right;
        neighbours beyond the frame's edge at -inf."""
        B, Fr, N, C = x0.shape
        nb = neighbourhood(prev_codes[:, None], self.grid)  # [B, 1, N, 9, C]
        d_nb = (x0[:, :, :, None] - nb).pow(2).mean(-1)  # [B, F, N, 9]
        d_own = (x0 - snapped).pow(2).mean(-1, keepdim=True)  # [B, F, N, 1]
        # how well each one-token move explains the whole frame: the camera moves every token alike,
        # so a token the DiT is losing (its x0 drifting off the tile) can follow the frame's move
        inside = self.inside.to(d_nb.dtype)  # [N, 9]
        d_frame = (d_nb * inside).sum(2, keepdim=True) / inside.sum(0)  # [B, F, 1, 9]
        # and the codes themselves: whether a neighbour is a tree or bare ground is what says
        # whether losing it matters (the DiT drifts objects into ground, never ground into objects)
        feats = torch.cat([hidden, torch.log(d_nb + 1e-4), torch.log(d_own + 1e-4),
                           torch.log(d_frame + 1e-4).expand(B, Fr, N, NEIGHBOURS),
                           nb.flatten(3).expand(B, Fr, N, NEIGHBOURS * C), snapped], -1)
        logits = self.net(feats)
        allowed = torch.cat([self.inside, self.inside.new_ones(N, 1)], -1)  # [N, 10]
        return logits.masked_fill(~allowed, float("-inf"))


def choose(logits: torch.Tensor, threshold: float, has_prev: torch.Tensor | None = None) -> torch.Tensor:
    """logits [B, ..., 10] -> int64 [B, ...]: the neighbour (0..8) likeliest to be right, where its
    probability is >= threshold and >= the drawn tile's, else DRAW; has_prev bool [B] (None: all
    True): a world with no previous frame yet draws every token."""
    p = torch.sigmoid(logits)
    p_copy, k = p[..., :DRAW].max(-1)
    copy = (p_copy >= threshold) & (p_copy >= p[..., DRAW])
    if has_prev is not None:
        copy = copy & has_prev.view(-1, *[1] * (copy.dim() - 1))
    return torch.where(copy, k, DRAW)


def apply(choice: torch.Tensor, drawn: torch.Tensor, prev_codes: torch.Tensor, grid: int) -> torch.Tensor:
    """choice int64 [B, F, N] (from `choose`); drawn [B, F, N, C] the frame as sampled and snapped;
    prev_codes [B, N, C] -> [B, F, N, C]: the chosen neighbour's previous code where a copy, else drawn."""
    B, Fr, N, C = drawn.shape
    nb = neighbourhood(prev_codes[:, None], grid).expand(B, Fr, N, NEIGHBOURS, C)  # [B, F, N, 9, C]
    k = choice.clamp(max=NEIGHBOURS - 1)[..., None, None].expand(B, Fr, N, 1, C)
    copied = nb.gather(3, k)[:, :, :, 0]
    return torch.where((choice < DRAW)[..., None], copied, drawn)


def targets(true: torch.Tensor, drawn: torch.Tensor, prev_codes: torch.Tensor, grid: int,
            has_prev: torch.Tensor) -> torch.Tensor:
    """true [B, F, N, C] the recorded frame's latent; drawn [B, F, N, C] the DiT's sample, snapped;
    prev_codes [B, N, C] the previous frame's codes; has_prev bool [B] (False: no previous frame,
    only DRAW) -> bool [B, F, N, 10] the correct choices: each candidate (the 9 neighbours'
    codes inside the frame, the drawn code) within TIE_SLACK / TIE_ABS of the best one's
    squared distance to the truth. Several neighbours of a uniform field tie; a copy that is as good
    as the drawn tile is a right answer too."""
    nb = neighbourhood(prev_codes[:, None], grid)  # [B, 1, N, 9, C]
    cand = torch.cat([nb.expand(*drawn.shape[:3], NEIGHBOURS, -1), drawn[:, :, :, None]], 3)  # [B, F, N, 10, C]
    d = (cand - true[:, :, :, None]).pow(2).mean(-1)  # [B, F, N, 10]
    ok = torch.cat([inside(grid, d.device), d.new_ones(d.shape[2], 1, dtype=torch.bool)], -1)  # [N, 10]
    ok = ok & torch.cat([has_prev[:, None, None, None].expand(*d.shape[:3], NEIGHBOURS),
                         d.new_ones(*d.shape[:3], 1, dtype=torch.bool)], -1)
    d = d.masked_fill(~ok, float("inf"))
    return d <= d.min(-1, keepdim=True).values * (1 + TIE_SLACK) + TIE_ABS


def gate_loss(logits: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Each choice's logit is the log-odds that it is right (several can be: a uniform field's
    neighbours all are): a binary cross-entropy per choice over the choices that exist (finite
    logits). logits, correct [..., 10]."""
    valid = torch.isfinite(logits)
    bce = F.binary_cross_entropy_with_logits(logits.masked_fill(~valid, 0.0), correct.float(), reduction="none")
    # where copying and drawing are both right (most of a uniform field) the choice does not
    # matter; the tokens where exactly one is right decide what the gate does
    decisive = correct[..., :DRAW].any(-1) != correct[..., DRAW]
    w = valid * (1.0 + (DECISIVE_WEIGHT - 1.0) * decisive[..., None])
    return (bce * w).sum() / w.sum()


def gate_counts(choice: torch.Tensor, correct: torch.Tensor) -> dict[str, torch.Tensor]:
    """How a gate's choices [...] (from `choose`) fare against the right ones [..., 10]: token
    counts of all tokens, those only a copy gets right ('copy_only', what the gate is for), those
    of them it copies right ('fixed'), those it copies ('copied') and copies wrong ('wrong')."""
    right = correct.gather(-1, choice[..., None])[..., 0]
    copied = choice < DRAW
    copy_only = correct[..., :DRAW].any(-1) & ~correct[..., DRAW]
    return {"tokens": torch.tensor(float(choice.numel())), "copy_only": copy_only.sum().float(),
            "fixed": (copy_only & right).sum().float(), "copied": copied.sum().float(),
            "wrong": (copied & ~right).sum().float()}
