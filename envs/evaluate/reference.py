"""What the teacher's own frames look like: the player-sprite check and the ranges a frame of
the teacher's world stays within."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .config import Game, PSNR_CAP, RANGE_SEED_BASE, as_game
from .rollouts import teacher_run


@functools.lru_cache(maxsize=128)
def style_atlas(style, resolution: int):
    from envs.teacher import VIEW
    from envs.tiles import BASE_TILE, Atlas

    return Atlas(style, BASE_TILE * (resolution // VIEW))


def player_psnr(frames: np.ndarray, style, offset: tuple[int, int] = (0, 0), motion: str = "smooth") -> np.ndarray:
    """uint8 [T, R, R, 3] -> [T] PSNR of the player's patch vs the player sprite of `style`
    (best of the 4 facings), over the sprite's own pixels only. `offset` moves the patch."""
    from envs.teacher import player_origin

    R = frames.shape[1]
    atlas = style_atlas(style, R)
    ts, mask = atlas.player.shape[1], atlas.player_mask  # [ts, ts] bool
    y, x = player_origin(R, motion)
    y, x = y + offset[0], x + offset[1]
    patch = frames[:, y : y + ts, x : x + ts][:, mask].astype(np.float32)  # [T, P, 3]
    sprite = atlas.player[:, mask].astype(np.float32)  # [4, P, 3]
    mse = ((patch[:, None] - sprite[None]) ** 2).mean(axis=(2, 3)).min(axis=1)  # [T]
    return np.minimum(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10)), PSNR_CAP)

@functools.lru_cache(maxsize=4)  # once per game: the compare checkpoint reuses it (read-only)
def teacher_reference(game: Game | int, frames: int = 24) -> dict[str, Any]:
    """What the teacher's own frames look like, over all 96 styles (RANGE_SEED_BASE seeds).

    mean/std: min/max of the per-frame mean and std. player_*: the player-sprite PSNR
    (`player_psnr`) of the frames (p1: the least a frame showing the player scores, under
    rain or snow) and of sprite-sized patches two tiles off the centre, where the player is
    not (p99: the most a frame without the player scores); the threshold sits midway.
    """
    from envs.style import BIOMES, TIMES_OF_DAY, WEATHERS, Style

    game = as_game(game)
    means, stds, present, absent = [], [], [], []
    for k in range(len(BIOMES) * len(TIMES_OF_DAY) * len(WEATHERS)):
        style = Style(BIOMES[k % 6], TIMES_OF_DAY[k // 6 % 4], WEATHERS[k // 24])
        true = teacher_run(RANGE_SEED_BASE + k, frames, game, style=style).frames
        f = true.astype(np.float32)
        means += list(f.mean(axis=(1, 2, 3)))
        stds += list(f.std(axis=(1, 2, 3)))
        present += list(player_psnr(true, style, motion=game.motion))
        ts = style_atlas(style, game.resolution).player.shape[1]
        for off in ((0, 2 * ts), (2 * ts, 0), (-2 * ts, -ts)):
            absent += list(player_psnr(true, style, off, game.motion))
    p_lo, a_hi = float(np.percentile(present, 1)), float(np.percentile(absent, 99))
    return {"mean": (float(min(means)), float(max(means))), "std": (float(min(stds)), float(max(stds))),
            "player_present_p1": p_lo, "player_absent_p99": a_hi, "player_threshold": (p_lo + a_hi) / 2}
