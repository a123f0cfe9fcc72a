"""Which tiles stop a move (`game.passability`): counted from the recordings, read at play time.

A move key walks the player onto the tile next to it, unless that tile is a tree, a rock, water
or anything else the game does not let it enter: then the camera stays. Blocked moves are rare
in the recordings (3-5% of the move steps), and the DiT never learned them: it slides the view
on every one (issue 14's camera figure followed 0 of the held-out blocked moves; Crafter's 0 of
4), so walking into a tree moves the world, the copy gate follows the slide, and the model's
camera drifts from the real one.

What stops a move is a property of the tile, and every recorded move step shows it: the code the
frame shows on the tile the move walks onto, and whether the camera stayed (the recorded
positions did not change). `count` tallies them per code of the tokenizer's codebook and
`Passability.fit` pools each code with its nearest codes (a tile's look-alike variants; a variant
the recordings never put in front of the player borrows its tile's odds): `blocked` [K] is P(the
move is blocked | the code walked onto). At play time (`WorldModel.snap`) a move whose target code has
P > `THRESHOLD` keeps the camera: every token but the fixed ones (the player's tile, Crafter's
status bar, which the DiT still draws) copies its previous code in place, and the tile map
reads no move. Fitted on three quarters of the recording files and judged on the rest, 99.1% of
the moves it calls blocked are (76% of the teacher's blocked moves found; Crafter: 98.6%, 95%
found); docs/RESULTS.md, twenty-fifth session.

What ends an episode is a property of the tile too (deep water, lava, quicksand: the teacher's
hazards), and the done head misses it in the model's own world: a random walker in World-v0 walked
onto tiles its frames showed as hazards 105 times and ended 3 (the teacher ends 13 of 23; the
twenty-seventh session), so an agent trained there never learns to keep out of a lake. With
`game.hazards` the count also gives `ends` [K], P(the step onto code k ended the episode), pooled
the same way, and a move onto a code with P > `THRESHOLD` that does not block ends the episode
(`WorldModel.walks_into_hazard`: the done probability is 1, whatever the head says).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from . import codebook
from .prev_frame import CENTRE, offset

POOL = 4
"""Codes pooled per estimate: the code itself and its 3 nearest codes in the codebook."""
PRIOR = 0.5
"""Pseudo-count of unblocked moves per pool: a code never walked onto reads 0, one seen blocked once 0.67."""
THRESHOLD = 0.5
"""A move onto a code with P(blocked) above this keeps the camera."""


class Passability(nn.Module):
    """The table: blocked [K] float, P(a move onto code k is blocked); with hazards, ends [K] float,
    P(a move onto code k ends the episode) (weights of the checkpoint)."""

    def __init__(self, num_codes: int, hazards: bool = False):
        super().__init__()
        self.register_buffer("blocked", torch.zeros(num_codes))
        self.register_buffer("ends", torch.zeros(num_codes) if hazards else None)

    @torch.no_grad()
    def fit(self, codes: torch.Tensor, blocked: torch.Tensor, book: torch.Tensor,
            ended: torch.Tensor | None = None) -> "Passability":
        """codes int64 [S] the code walked onto at each recorded move step, blocked bool [S] whether
        the camera stayed, ended bool [S] whether the step ended the episode (needed with hazards);
        book [K, C] the codebook -> self, the tables filled in place. A step that ended the episode
        says nothing about blocking (a hazard, not an obstacle)."""
        pool = look_alikes(book)  # [K, POOL]
        ended = torch.zeros_like(blocked) if ended is None else ended
        self.blocked.copy_(_pooled_rate(codes[~ended], blocked[~ended], pool))
        if self.ends is not None:
            self.ends.copy_(_pooled_rate(codes, ended, pool))
        return self

    def blocks(self, prev_idx: torch.Tensor, move: torch.Tensor, player: int, grid: int) -> torch.Tensor:
        """prev_idx int64 [B, N] the previous frame's code indices, move int64 [B, c] each step's
        3x3 neighbour index (`world.actions.move_neighbours`; CENTRE: no move) -> bool [B, c]: the
        move walks onto a code that blocks it (the camera stays)."""
        code = prev_idx.gather(1, walked_onto(move, player, grid))
        return (move != CENTRE) & (self.blocked[code] > THRESHOLD)

    def hazard(self, prev_idx: torch.Tensor, move: torch.Tensor, player: int, grid: int) -> torch.Tensor:
        """As `blocks` -> bool [B, c]: the move walks onto a code that ends the episode (never one
        that blocks it; all False without the hazards table)."""
        if self.ends is None:
            return torch.zeros(move.shape, dtype=torch.bool, device=move.device)
        code = prev_idx.gather(1, walked_onto(move, player, grid))
        return (move != CENTRE) & (self.ends[code] > THRESHOLD) & (self.blocked[code] <= THRESHOLD)


def _pooled_rate(codes: torch.Tensor, hit: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """codes int64 [S], hit bool [S], pool [K, POOL] -> float [K]: the share of the steps onto each
    code's pool that hit, with PRIOR steps that did not."""
    K = len(pool)
    n = torch.bincount(codes, minlength=K).double()
    h = torch.bincount(codes, weights=hit.double(), minlength=K)
    return (h[pool].sum(1) / (n[pool].sum(1) + PRIOR)).float()


def look_alikes(book: torch.Tensor) -> torch.Tensor:
    """book [K, C] the codebook -> int64 [K, POOL]: each code and its nearest codes, the pool a
    count per code is shared over (a tile's look-alike variants)."""
    return torch.cdist(book.double(), book.double()).topk(min(POOL, len(book)), largest=False).indices


def walked_onto(move: torch.Tensor, player: int, grid: int) -> torch.Tensor:
    """move int64 [...] a 3x3 neighbour index -> int64 [...] the token it walks the player onto
    (the player's own for CENTRE; the player never stands on the frame's edge)."""
    dy, dx = offset(move)
    return player + dy * grid + dx


def target_codes(idx: torch.Tensor, move: torch.Tensor, player: int, grid: int) -> torch.Tensor:
    """idx int64 [S, N] code indices of the frames a move was made from, move int64 [S] its 3x3
    neighbour index -> int64 [S] the code on the tile walked onto."""
    return idx.gather(1, walked_onto(move, player, grid)[:, None])[:, 0]


class Counted(NamedTuple):
    """The recorded move steps of some clips (`count`), S of them."""

    walked: torch.Tensor  # int64 [S] the code on the tile walked onto
    blocked: torch.Tensor  # bool [S] the recorded position did not change
    paid: torch.Tensor  # bool [S] the step paid a reward (world/spawn.py)
    ended: torch.Tensor  # bool [S] the step ended the episode (a hazard)
    frames: torch.Tensor  # int64 [S, N] the code indices of the frames moved from


@torch.no_grad()
def count(tokenizer, clips: dict, moves: list[int], player: int, grid: int, device="cpu") -> Counted:
    """Tally the recorded move steps of a batch of clips as `world.train.Batches` yields them (frames
    uint8 [b, T, H, W, 3], actions [b, T], positions [b, T, 2], terminated [b, T], rewards [b, T];
    action t leads from frame t to t + 1), moves the neighbour index of each action slot."""
    act, pos = clips["actions"][:, :-1].long(), clips["positions"]  # the last action has no next frame here
    mv = torch.tensor(moves)[act]  # [b, T - 1]
    keep = mv != CENTRE
    if not keep.any():
        none = torch.zeros(0, dtype=torch.long)
        return Counted(none, none.bool(), none.bool(), none.bool(), torch.zeros(0, grid * grid, dtype=torch.long))
    frames = clips["frames"][:, :-1][keep]  # [S, H, W, 3]
    idx = codebook.nearest(tokenizer.encode(frames.to(device)), tokenizer.codebook).cpu()  # [S, N]
    return Counted(target_codes(idx, mv[keep], player, grid), (pos[:, 1:] == pos[:, :-1]).all(-1)[keep],
                   clips["rewards"][:, :-1][keep] > 0, clips["terminated"][:, :-1][keep].bool(), idx)
