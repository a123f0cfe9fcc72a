"""The tile map: what the world has shown, kept at its place in the world (`sampler.tile_map`).

A move brings a row or column of tiles into view that the DiT has to draw. When the
player walks back to where it was a few frames ago, that edge is world the model has
already drawn, but the copy gate only reads the previous frame, and the DiT draws the
edge as the mean of what could be there (bare ground): the place the player left is gone
when it returns (issue 14). The tile map keeps every code the world showed at its world
position, and a token coming into view takes the code the map holds for its place.

Positions come from the copy gate, not the game: each frame, the move most of the gate's
per-token choices take (its vote, over the tokens whose neighbours differ) is the camera's move
as the model drew it, so the map follows the model's own world even where it walked differently
from the real game; only where nothing in the frame tells (a uniform field) does the key's move
count. The map has a fixed size (`SIDE` x `SIDE` tokens, indexed modulo SIDE) and each cell
keeps the world position it was written for, so a cell read for another place (the walk went
further than SIDE tokens) counts as unknown: constant memory, nothing recalled wrongly.
The player's tile and Crafter's status bar (`GameConfig.fixed_tokens`) are neither written
nor filled, and the place the player stands on is forgotten: a gem it picks up there does not
come back when it steps off (the map once did, and an agent farmed it, stepping on and off). A world with no previous frame, or within `sampler.snap_hold` frames of a
prompt change, starts an empty map.

State (world/state.py, part of every snapshot): `tile_map.codes` [B, SIDE, SIDE] int64
code indices (-1 unknown), `tile_map.where` [B, SIDE, SIDE, 2] int64 the world position
(y, x) each cell was written for, `tile_map.origin` [B, 2] int64 the world position of
the view's top-left token.
"""

from __future__ import annotations

import functools

import torch

from .copy_gate import TIE_ABS
from .prev_frame import CENTRE, NEIGHBOURS, inside, neighbourhood, offset

SIDE = 32
"""Map side in tokens: four 8-token views each way around where the world began."""


def empty(batch: int, device=None) -> dict[str, torch.Tensor]:
    """A batch of empty maps (the state's `tile_map.*` tensors)."""
    return {"codes": torch.full((batch, SIDE, SIDE), -1, dtype=torch.long, device=device),
            "where": torch.zeros(batch, SIDE, SIDE, 2, dtype=torch.long, device=device),
            "origin": torch.zeros(batch, 2, dtype=torch.long, device=device)}


@functools.lru_cache(maxsize=8)
def layout(grid: int, device: torch.device, fixed: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """What the frame's layout alone decides, once per grid and fixed tokens: (row, column) of each
    token int64 [N, 2]; which of its 3x3 neighbours lie in the frame bool [9, N]
    (prev_frame.inside, transposed); movable bool [N] (not a fixed token); clear bool [N] (no fixed
    token in its 3x3)."""
    ar = torch.arange(grid, device=device)
    rc = torch.stack(torch.meshgrid(ar, ar, indexing="ij"), -1).view(grid * grid, 2)
    movable = torch.ones(grid * grid, dtype=torch.bool, device=device)
    movable[list(fixed)] = False
    pinned = (~movable).float().view(1, 1, -1, 1)
    clear = neighbourhood(pinned, grid)[0, 0, :, :, 0].sum(-1) == 0
    return rc, inside(grid, device).T.contiguous(), movable, clear


def camera_move(choice: torch.Tensor, prev: torch.Tensor, grid: int, key_move: torch.Tensor,
                fixed: list[int] = ()) -> torch.Tensor:
    """The frame's move as the model drew it -> [B] neighbour index (4 = in place): the move most
    tokens copy from, counting only tokens whose one-token moves show different tiles (in a
    uniform field every neighbour is the same grass, and the gate's pick among them says nothing)
    and that neither are nor border a token drawn in place whatever the camera does (`fixed`: the
    player, Crafter's status bar); where no token tells, the move the key asks for (key_move [B]).
    choice int64 [B, N] (copy_gate.choose: neighbour 0..8 or DRAW); prev [B, N, C] the previous
    frame's codes (vectors: two look-alike variants of grass, `copy_gate.TIE_ABS` apart, tell nothing)."""
    B = choice.shape[0]
    _, has_neighbour, _, clear = layout(grid, choice.device, tuple(fixed))
    nb = neighbourhood(prev[:, None], grid)[:, 0]  # [B, N, 9, C]
    cross = [1, 3, 5, 7]  # the four one-token moves
    apart = ((nb[:, :, cross] - nb[:, :, CENTRE, None]).pow(2).mean(-1) > TIE_ABS) & has_neighbour[cross].T  # [B, N, 4]
    telling = apart.any(-1) & (choice < NEIGHBOURS) & clear  # [B, N]
    votes = torch.zeros(B, NEIGHBOURS + 1, dtype=torch.long, device=choice.device)
    votes.scatter_add_(1, torch.where(telling, choice, NEIGHBOURS), torch.ones_like(choice))
    return torch.where(votes[:, :NEIGHBOURS].sum(1) > 0, votes[:, :NEIGHBOURS].argmax(1), key_move)


def _cells(where: torch.Tensor) -> torch.Tensor:
    """world positions [..., 2] -> flat cell index [...] into a SIDE x SIDE map."""
    w = where % SIDE
    return w[..., 0] * SIDE + w[..., 1]


def update(maps: dict[str, torch.Tensor], prev: torch.Tensor, prev_codes: torch.Tensor, choice: torch.Tensor,
           key_move: torch.Tensor, fresh: torch.Tensor, grid: int, fixed: list[int]) -> torch.Tensor:
    """Write the previous frame into the map, move the view with the gate's vote, and recall the
    tokens that come into view. In place on `maps`.
    prev [B, N, C] the previous frame's codes, prev_codes int64 [B, N] their indices; choice int64 [B, N] the gate's
    choices for the new frame; key_move int64 [B] the neighbour index of the move the action asks
    for (4: none; `camera_move`); fresh bool [B] worlds that start an empty map (nothing is written
    or recalled); fixed: token indices never written or filled, the player's first (its place is forgotten).
    -> int64 [B, N]: the map's code for each token that came into view where the map knows its
    place, else -1."""
    B, N = prev_codes.shape
    dev = prev_codes.device
    codes, where, origin = maps["codes"], maps["where"], maps["origin"]
    codes[fresh] = -1
    origin[fresh] = 0
    rc, has_neighbour, movable, _ = layout(grid, dev, tuple(fixed))  # [N, 2], [9, N], [N]
    # 1. the previous frame at its place
    pos = origin[:, None] + rc  # [B, N, 2]
    write = movable[None] & ~fresh[:, None]  # [B, N]
    b_idx = torch.arange(B, device=dev)[:, None].expand(B, N)[write]
    cell = _cells(pos)[write]
    codes.view(B, -1)[b_idx, cell] = prev_codes[write]
    where.view(B, -1, 2)[b_idx, cell] = pos[write]
    # 2. the camera's move: token (r, c) copies the previous frame's (r + dy, c + dx)
    k = camera_move(choice, prev, grid, key_move, fixed)  # [B]
    step = torch.stack(offset(k), -1)  # [B, 2] (dy, dx)
    origin += torch.where(fresh[:, None], torch.zeros_like(step), step)
    # the tile the player now stands on is forgotten: what lay there (a gem) is the player's now, and
    # a map that gave it back when the player steps off would pay the same gem again and again
    if fixed:
        under = _cells(origin + rc[fixed[0]])  # [B]
        codes.view(B, -1)[torch.arange(B, device=dev), under] = -1
    # 3. the tokens whose source lies outside the view (or under a fixed token) came into view
    source_ok = has_neighbour[k]  # [B, N]: the token has its k-th neighbour in the frame
    src = (rc[None] + step[:, None]).clamp(0, grid - 1)  # [B, N, 2]
    source_ok &= movable[src[..., 0] * grid + src[..., 1]]
    came_in = ~source_ok & movable[None] & ~fresh[:, None] & (k != NEIGHBOURS // 2)[:, None]  # [B, N]
    pos = origin[:, None] + rc  # [B, N, 2] the new frame's world positions
    cell = _cells(pos)  # [B, N]
    held = codes.view(B, -1).gather(1, cell)  # [B, N]
    at = where.view(B, -1, 2).gather(1, cell[..., None].expand(B, N, 2))  # [B, N, 2]
    known = came_in & (held >= 0) & (at == pos).all(-1)
    return torch.where(known, held, torch.full_like(held, -1))



def entered(maps: dict[str, torch.Tensor], origin_before: torch.Tensor, fresh: torch.Tensor, grid: int,
            fixed: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """After `update`: bool [B, N] the tokens that came into view from beyond the frame (not from
    under a fixed token) with the camera's move, int64 [B, N, 2] every token's world position.
    origin_before int64 [B, 2] the maps' origin before that update, fresh bool [B] the worlds that
    update started afresh (nothing entered)."""
    rc, has_neighbour, movable, _ = layout(grid, origin_before.device, tuple(fixed))
    origin = maps["origin"]
    step = origin - origin_before  # [B, 2]
    moved = (step != 0).any(-1) & ~fresh  # [B]
    k = ((step[:, 0] + 1) * 3 + step[:, 1] + 1).clamp(0, NEIGHBOURS - 1)  # the camera's move
    return ~has_neighbour[k] & movable[None] & moved[:, None], origin[:, None] + rc
