"""Crafter (Hafner 2021) as a Gymnasium env: `EchoInfinity/Crafter-v0`.

Crafter is an open-world 2D survival game on a tile grid, the standard world-model
benchmark (DreamerV3, IRIS, Delta-IRIS). Its pip package `crafter` keeps the old gym
API (`reset() -> obs`, `step -> (obs, reward, done, info)`, seed fixed at construction);
this wrapper gives it the Gymnasium one, so `record`, the policies and `check_env`
take it like any env.

Rendering: 64x64 RGB with `view=(8, 8)`: Crafter draws `size // view` = 8 pixels a tile,
so **one tile is one DiT token** of the `tiny` tokenizer (8x8 tokens of 8 px), the same
contract as the teacher's tile-step mode. Crafter's default 9x9 view does not divide 64
(7.1 px a tile, every tile edge mid-token); 72 px would keep 9 tiles but no preset has a
72-px tokenizer. The top 8x6 tiles are the world around the player (Crafter puts the
player at column 4, row 3 of an even grid), the bottom 8x2 the inventory / status bar.

Actions: Crafter's 17, in its order; the names are Crafter's, upper-cased, except that the
four moves are called UP / DOWN / LEFT / RIGHT and `do` is USE, the project's names, so
the explore and revisit policies find them. A move into a blocked cell only turns the
player. `blocks(a)` and `leads_to_hazard(a)` (lava) let the policies steer as on the teacher.

Seeding: `reset(seed=s)` builds Crafter's world from `s` (same seed, same actions -> same
frames); `reset()` without a seed starts the next world of the same seed sequence. Crafter
1.8.3 alone is not reproducible: it keeps each chunk's creatures in a `set`, iterated in
memory-address order, and despawns `creatures[random index]` of that order, so two runs of
one seed part ways after a few dozen steps. The wrapper swaps those sets for insertion-ordered
ones (`_ordered_chunks`), which makes every draw depend on the seed alone (tested).
Episodes end with `terminated` when the player dies and `truncated` after `length`
steps (Crafter's 10,000 by default). Rewards are Crafter's: +1 for each achievement
unlocked the first time, +-0.1 per health point gained or lost.

info: "position" (x, y) of the player in pixels (tile x 8, the unit the policies and
seen-content masks use), "tile" (tx, ty), "achievements" {name: count}, "inventory"
{name: count}, "caption" (a fixed sentence: Crafter has no prompt), "frame".
"""
from __future__ import annotations

import collections
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from world.actions import CRAFTER_ACTIONS

SIZE = 64            # pixels across: 8 tiles of 8 px
VIEW = 8             # tiles across (and rows incl. the 2-row inventory)
TILE_PX = SIZE // VIEW
AREA = 64            # Crafter's world is 64 x 64 tiles
CAPTION = "a Crafter world"
_MOVES = {"LEFT": (-1, 0), "RIGHT": (1, 0), "UP": (0, -1), "DOWN": (0, 1)}


def _crafter():
    try:
        import crafter
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the Crafter env needs the `crafter` package: "
                                  "pip install -e '.[crafter]' (or pip install crafter)") from None
    return crafter


class _OrderedSet(dict):
    """The `set` API Crafter's chunks use (add, remove, in, len, iteration) in insertion order."""

    def add(self, item) -> None:
        self[item] = None

    def remove(self, item) -> None:
        del self[item]


def _ordered_chunks(world) -> None:
    """Replace the world's per-chunk object sets by insertion-ordered ones, each ordered by the
    objects' indices (their order of creation), so iterating a chunk never depends on memory."""
    index = lambda obj: int(world._obj_map[tuple(obj.pos)])  # noqa: E731
    world._chunks = collections.defaultdict(_OrderedSet, {
        key: _OrderedSet.fromkeys(sorted(objs, key=index)) for key, objs in world._chunks.items()})


class CrafterEnv(gym.Env):
    """Crafter with the Gymnasium API, 64x64 frames and one tile per 8 px (see the module doc)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    motion = "tile"   # a move goes one whole tile: the policies plan in tiles
    # the explore policy's USE / other-action shares here: wood, stone and coal take repeated USE
    explore_defaults = {"use_prob": 0.15, "other_prob": 0.05}

    def __init__(self, render_mode: str | None = None, length: int = 10_000):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render_mode {render_mode!r}; choose one of {self.metadata['render_modes']}")
        if length < 1:
            raise ValueError(f"length must be >= 1 steps, got {length}")
        self._crafter = _crafter()
        self.render_mode, self.length = render_mode, length
        self.observation_space = spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
        self.action_space = spaces.Discrete(len(CRAFTER_ACTIONS))
        self._game = None
        self._obs: np.ndarray | None = None

    def get_action_meanings(self) -> list[str]:
        return list(CRAFTER_ACTIONS)

    # --- Gymnasium API -----------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options:
            raise ValueError(f"Crafter takes no reset options, got {sorted(options)}")
        if seed is not None or self._game is None:
            # Crafter seeds its world at construction: a new seed is a new game object.
            world_seed = int(self.np_random.integers(0, 2**31 - 1))
            self._game = self._crafter.Env(area=(AREA, AREA), view=(VIEW, VIEW), size=(SIZE, SIZE),
                                           length=self.length, seed=world_seed)
        self._obs = self._game.reset()
        _ordered_chunks(self._game._world)
        self.frame_index = 0
        return self._obs.copy(), self._info(None)

    def step(self, action):
        if self._game is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action) or isinstance(action, (bool, np.bool_)):
            raise ValueError(f"invalid action {action!r}: expected an int in [0, {self.action_space.n}) — "
                             + ", ".join(f"{i} {m}" for i, m in enumerate(CRAFTER_ACTIONS)))
        self._obs, reward, done, raw = self._game.step(int(action))
        self.frame_index += 1
        terminated = bool(raw["discount"] == 0.0)      # the player died
        truncated = bool(done and not terminated)      # Crafter's step limit
        return self._obs.copy(), float(reward), terminated, truncated, self._info(raw)

    def render(self):
        return None if self._obs is None else self._obs.copy()

    # --- what the policies ask -------------------------------------------
    def _target(self, action: int):
        move = _MOVES.get(CRAFTER_ACTIONS[int(action)])
        if move is None or self._game is None:
            return None
        x, y = self._game._player.pos
        return self._game._world[(x + move[0], y + move[1])]

    def blocks(self, action: int) -> bool:
        """Would move `action` leave the player where it is (a solid cell or a creature)?"""
        target = self._target(action)
        if target is None:
            return False
        material, obj = target
        return obj is not None or material not in self._game._player.walkable

    def leads_to_hazard(self, action: int) -> bool:
        """Would move `action` walk into lava (death)?"""
        target = self._target(action)
        return target is not None and target[1] is None and target[0] == "lava"

    def _info(self, raw: dict | None) -> dict:
        player = self._game._player
        tx, ty = int(player.pos[0]), int(player.pos[1])
        return {"position": (tx * TILE_PX, ty * TILE_PX), "tile": (tx, ty),
                "achievements": dict(player.achievements), "inventory": dict(player.inventory),
                "caption": CAPTION, "frame": self.frame_index}
