"""The real game behind a checkpoint (`game.env`): what World-v0 starts from, what eval and
`play --compare` put beside the model. One place, so every front end makes it the same way."""
from __future__ import annotations

import gymnasium as gym


def make_game(game, resolution: int) -> gym.Env:
    """The real game of `game` (a `world.config.GameConfig`) at frame side `resolution`:
    the teacher in the checkpoint's motion mode, or Crafter (64 px only)."""
    if game.env == "crafter":
        from .crafter import SIZE, CrafterEnv

        if resolution != SIZE:
            raise ValueError(f"Crafter is rendered at {SIZE} px (one 8-px tile a token); "
                             f"this checkpoint's frames are {resolution} px")
        return CrafterEnv()
    from .teacher import TeacherEnv

    return TeacherEnv(resolution=resolution, motion=game.motion)
