"""The teacher: a deterministic, infinite, top-down 2D game (`EchoInfinity/Teacher-v0`).

It is the ground truth the world model learns from and is measured against:
same seed + same actions -> the exact same frames. The world is generated from
(seed, tile coordinates) in chunks (`terrain.TileMap`), so any place renders
identically whatever path led there, and the player's changes (collected gems,
chopped trees, placed crates) persist when they come back.

Rules
- The camera follows the player. Two motion modes (`motion=`):
  `"smooth"`: a move scrolls `SPEED` base pixels a frame (a tile takes 4
  frames), the player drawn in the exact centre;
  `"tile"`: a move goes exactly one tile a frame, and the view is aligned so
  that tile edges are DiT token edges (8 base pixels = one token at every
  preset), the player drawn on the tile just right of and below the centre.
  A tile step is a shift by whole tokens plus one new row or column: motion a
  small model learns on a CPU budget.
- Actions (Discrete(6)): 0 NOOP, 1 UP, 2 DOWN, 3 LEFT, 4 RIGHT, 5 USE.
  Moves turn the player and move it unless a solid tile (tree/rock/cactus or a
  placed crate) is in the way. USE acts on the tile in front of the player:
  chops an obstacle (leaves a stump), removes a crate, or places a crate on
  free ground.
- Walking onto a gem collects it: reward +1, and it stays gone.
- Walking into a hazard (deep water, lava, quicksand: the biome decides the
  look) ends the episode (`terminated=True`).
- Style (biome, time of day, weather) only changes the look, never the layout;
  `set_style` switches it mid-episode with a short cross-fade.

Positions are in *base pixels* (a tile is 8 base pixels; at resolution 128 or
256 every base pixel is drawn 2 or 4 pixels wide), so a trajectory means the
same place at every resolution.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from world.actions import ACTION_MEANINGS, DOWN, LEFT, NOOP, RIGHT, UP, USE  # noqa: F401  (re-exported)

from .style import Style, caption, parse_prompt, sample_style
from .terrain import MAX_COORD, TileMap
from .tiles import BASE_TILE, BLOCK, GEM, GROUND, HAZARD, OBSTACLE, SOLID, STUMP, Atlas

_MOVES = {UP: (0, -1), DOWN: (0, 1), LEFT: (-1, 0), RIGHT: (1, 0)}  # (dx, dy)
_FACING_INDEX = {UP: 0, DOWN: 1, LEFT: 2, RIGHT: 3}  # order of Atlas.player

RESOLUTIONS = (64, 128, 256)
MOTIONS = ("smooth", "tile")
VIEW = 64  # the view is 64 base pixels (8 tiles) across at every resolution
SPEED = 2  # base pixels per frame: a tile takes 4 frames to cross
PLAYER_HALF = 3  # the player's collision box is 6x6 base pixels
SPAWN_RANGE = 100_000  # spawn tiles are drawn from [-SPAWN_RANGE, SPAWN_RANGE)^2
TRANSITION_FRAMES = 8  # cross-fade length of a style switch
WEATHER_PERIOD = 64  # frames before the rain/snow pattern repeats


class TeacherEnv(gym.Env):
    """The procedural teacher game as a Gymnasium env.

    reset(seed=..., options=...) options (all optional, at most one of prompt/style):
      "prompt": free text parsed by keywords ("snowy forest at night"),
      "style": {"biome", "time_of_day", "weather"} dict or a Style,
      "position": (x, y) spawn in base pixels; moved to the nearest free tile.
    info: "position" (x, y), "tile" (tx, ty), "facing", "style" (dict),
          "caption" (a sentence describing the style), "frame", "gems".
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None, resolution: int = 64, style: str | dict | Style | None = None,
                 motion: str = "smooth"):
        if resolution not in RESOLUTIONS:
            raise ValueError(f"unsupported resolution {resolution!r}; choose one of {RESOLUTIONS}")
        if motion not in MOTIONS:
            raise ValueError(f"unknown motion {motion!r}; choose one of {MOTIONS}")
        self.motion = motion
        self.step_px = BASE_TILE if motion == "tile" else SPEED  # base pixels per move
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render_mode {render_mode!r}; choose one of {self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.resolution = resolution
        self.scale = resolution // VIEW  # screen pixels per base pixel
        self.tile_size = BASE_TILE * self.scale
        self._default_style = None if style is None else _to_style(style)
        self.observation_space = spaces.Box(0, 255, (resolution, resolution, 3), np.uint8)
        self.action_space = spaces.Discrete(len(ACTION_MEANINGS))
        self._atlases: dict[Style, Atlas] = {}
        self._window = None
        self._frame: np.ndarray | None = None
        self.tilemap: TileMap | None = None

    # --- Gymnasium API -----------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"prompt", "style", "position"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; valid: 'prompt', 'style', 'position'")
        if "prompt" in options and "style" in options:
            raise ValueError("give either options['prompt'] or options['style'], not both")
        world_seed = int(self.np_random.integers(0, 2**62))
        spawn = self.np_random.integers(-SPAWN_RANGE, SPAWN_RANGE, size=2)
        style = sample_style(self.np_random) if self._default_style is None else self._default_style
        if "prompt" in options:
            style = parse_prompt(options["prompt"], default=style)
        elif "style" in options:
            style = _to_style(options["style"])
        if "position" in options:
            spawn = np.asarray(_check_position(options["position"])) // BASE_TILE

        self.tilemap = TileMap(world_seed)
        self.frame_index = 0
        self.gems = 0
        self.facing = DOWN
        tx, ty = self._free_tile_near(int(spawn[0]), int(spawn[1]))
        self.x, self.y = tx * BASE_TILE + BASE_TILE // 2, ty * BASE_TILE + BASE_TILE // 2
        self._weather = _weather_pattern(world_seed, self.resolution)
        self._set_style_now(style)
        self._fade_from: Style | None = None
        self._fade_left = 0
        self._frame = self._render_frame()
        if self.render_mode == "human":
            self.render()
        return self._frame.copy(), self._info()

    def step(self, action):
        if self.tilemap is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action) or isinstance(action, (bool, np.bool_)):
            raise ValueError(
                f"invalid action {action!r}: expected an int in [0, {self.action_space.n}) — "
                + ", ".join(f"{i} {m}" for i, m in enumerate(ACTION_MEANINGS))
            )
        action = int(action)
        reward, terminated = 0.0, False
        if action in _MOVES:
            self.facing = action
            dx, dy = _MOVES[action]
            nx, ny = self.x + dx * self.step_px, self.y + dy * self.step_px
            if not self._blocked(nx, ny):
                self.x, self.y = nx, ny
            tx, ty = self.x // BASE_TILE, self.y // BASE_TILE
            cls = self.tilemap.cls(tx, ty)
            if cls == GEM:
                self.tilemap.set_class(tx, ty, GROUND)
                self.gems += 1
                reward = 1.0
            elif cls == HAZARD:
                terminated = True
        elif action == USE:
            self._use()
        self.frame_index += 1
        self._frame = self._render_frame()
        if self.render_mode == "human":
            self.render()
        return self._frame.copy(), reward, terminated, False, self._info()

    def render(self):
        if self._frame is None:
            raise RuntimeError("call reset() before render()")
        if self.render_mode == "human":
            self._show(self._frame)
            return None
        return self._frame.copy()

    def close(self):
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = None

    def get_action_meanings(self) -> list[str]:
        return list(ACTION_MEANINGS)

    def leads_to_hazard(self, action: int) -> bool:
        """Would this action move the player's centre onto a hazard now? (For scripted policies.)"""
        if self.tilemap is None or action not in _MOVES:
            return False
        dx, dy = _MOVES[action]
        x, y = self.x + dx * self.step_px, self.y + dy * self.step_px
        return self.tilemap.cls(x // BASE_TILE, y // BASE_TILE) == HAZARD

    def blocks(self, action: int) -> bool:
        """Would this move be stopped by a solid tile now? (For scripted policies.)"""
        if self.tilemap is None or action not in _MOVES:
            return False
        dx, dy = _MOVES[action]
        return self._blocked(self.x + dx * self.step_px, self.y + dy * self.step_px)

    # --- style -------------------------------------------------------------
    def set_style(self, style: str | dict | Style, transition: int = TRANSITION_FRAMES) -> Style:
        """Switch the look mid-episode; a prompt keeps the fields it does not name.

        The next `transition` frames cross-fade from the old look. Returns the new style.
        Raises ValueError (and changes nothing) for an unknown or malformed style.
        """
        if self.tilemap is None:
            raise RuntimeError("call reset() before set_style()")
        new = parse_prompt(style, default=self.style) if isinstance(style, str) else _to_style(style)
        if new != self.style and transition > 0:
            self._fade_from, self._fade_left, self._fade_len = self.style, transition, transition
        self._set_style_now(new)
        return new

    def render_style(self, style: str | dict | Style) -> np.ndarray:
        """The current view drawn in another style (its tiles, tint and weather; the same place,
        player and frame index), uint8 [R, R, 3]. Nothing in the game changes: what the world
        would look like had the prompt been `style` all along (world/restyle.py learns from it)."""
        if self.tilemap is None:
            raise RuntimeError("call reset() before render_style()")
        new = parse_prompt(style, default=self.style) if isinstance(style, str) else _to_style(style)
        return self._draw(self._atlas_for(new), new.weather)

    def _set_style_now(self, style: Style) -> None:
        self.style = style
        self._style_dict = style.to_dict()  # built once: asdict() per frame is a third of step()
        self.caption = caption(style, self.np_random)
        self._atlas = self._atlas_for(style)

    def _atlas_for(self, style: Style) -> Atlas:
        if style not in self._atlases:
            self._atlases[style] = Atlas(style, self.tile_size)
        return self._atlases[style]

    # --- rules -------------------------------------------------------------
    @staticmethod
    def _box_tiles(x: int, y: int) -> tuple[int, int, int, int]:
        """Tile range (x0, x1, y0, y1), inclusive, under the player's box centred at (x, y)."""
        return ((x - PLAYER_HALF) // BASE_TILE, (x + PLAYER_HALF - 1) // BASE_TILE,
                (y - PLAYER_HALF) // BASE_TILE, (y + PLAYER_HALF - 1) // BASE_TILE)

    def _blocked(self, x: int, y: int) -> bool:
        """Does the player's box centred at (x, y) overlap a solid tile?"""
        x0, x1, y0, y1 = self._box_tiles(x, y)
        return any(self.tilemap.cls(tx, ty) in SOLID for tx in (x0, x1) for ty in (y0, y1))

    def _use(self) -> None:
        dx, dy = _MOVES[self.facing]
        tx, ty = self.x // BASE_TILE + dx, self.y // BASE_TILE + dy
        cls = self.tilemap.cls(tx, ty)
        if cls == OBSTACLE:
            self.tilemap.set_class(tx, ty, STUMP)
        elif cls == BLOCK:
            self.tilemap.set_class(tx, ty, GROUND)
        elif cls in (GROUND, STUMP) and not self._box_overlaps(tx, ty):
            self.tilemap.set_class(tx, ty, BLOCK)

    def _box_overlaps(self, tx: int, ty: int) -> bool:
        x0, x1, y0, y1 = self._box_tiles(self.x, self.y)
        return x0 <= tx <= x1 and y0 <= ty <= y1

    def _free_tile_near(self, tx: int, ty: int) -> tuple[int, int]:
        """The nearest plain-ground tile to (tx, ty), searching outward ring by ring."""
        for r in range(64):
            for dy in range(-r, r + 1):
                for dx in (range(-r, r + 1) if abs(dy) == r else (-r, r)):
                    if self.tilemap.cls(tx + dx, ty + dy) == GROUND:
                        return tx + dx, ty + dy
        raise RuntimeError(f"no free tile within 64 tiles of ({tx}, {ty})")  # never seen: hazards are lakes

    # --- drawing -----------------------------------------------------------
    def _render_frame(self) -> np.ndarray:
        frame = self._draw(self._atlas)
        if self._fade_left > 0:  # cross-fade from the previous style
            a = self._fade_left / (self._fade_len + 1)
            old = self._draw(self._atlas_for(self._fade_from))
            frame = (old * a + frame * (1 - a)).round().astype(np.uint8)
            self._fade_left -= 1
        return frame

    def _draw(self, atlas: Atlas, weather: str | None = None) -> np.ndarray:
        s, ts, R = self.scale, self.tile_size, self.resolution
        oy0, ox0 = player_origin(VIEW, self.motion)  # the sprite's top-left in the view, base pixels
        half = BASE_TILE // 2
        vx, vy = self.x - half - ox0, self.y - half - oy0  # view's top-left, base pixels
        tx0, ty0 = vx // BASE_TILE, vy // BASE_TILE
        n = VIEW // BASE_TILE + 1  # one extra tile covers the sub-tile offset
        codes = self.tilemap.block(tx0, ty0, n, n)  # [n, n]
        big = atlas.tiles[codes].transpose(0, 2, 1, 3, 4).reshape(n * ts, n * ts, 3)
        ox, oy = (vx - tx0 * BASE_TILE) * s, (vy - ty0 * BASE_TILE) * s
        frame = big[oy : oy + R, ox : ox + R]
        cy, cx = oy0 * s, ox0 * s
        patch = frame[cy : cy + ts, cx : cx + ts]
        patch[atlas.player_mask] = atlas.player[_FACING_INDEX[self.facing]][atlas.player_mask]
        weather = self.style.weather if weather is None else weather
        if weather in ("rain", "snow"):
            kind = 0 if weather == "rain" else 1
            frame[self._weather[kind][self.frame_index % WEATHER_PERIOD]] = atlas.particle
        return np.ascontiguousarray(frame)

    def _info(self) -> dict[str, Any]:
        return {
            "position": (int(self.x), int(self.y)),
            "tile": (int(self.x // BASE_TILE), int(self.y // BASE_TILE)),
            "facing": ACTION_MEANINGS[self.facing],
            "style": dict(self._style_dict),
            "caption": self.caption,
            "frame": self.frame_index,
            "gems": self.gems,
        }

    def _show(self, frame: np.ndarray) -> None:
        import os

        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame

        size = 512
        if self._window is None:
            pygame.display.init()
            self._window = pygame.display.set_mode((size, size))
            pygame.display.set_caption("Echo-Infinity teacher")
        surf = pygame.surfarray.make_surface(frame.swapaxes(0, 1))
        self._window.blit(pygame.transform.scale(surf, (size, size)), (0, 0))
        pygame.event.pump()
        pygame.display.flip()


def player_origin(resolution: int, motion: str) -> tuple[int, int]:
    """(y, x) of the player sprite's top-left pixel in a frame of side `resolution`.

    smooth: the exact centre; tile: the tile whose top-left corner is the centre, so
    tile edges fall on multiples of the tile size (token edges)."""
    tile = resolution // (VIEW // BASE_TILE)
    c = resolution // 2 if motion == "tile" else resolution // 2 - tile // 2
    return c, c


def _weather_pattern(seed: int, R: int) -> np.ndarray:
    """Boolean particle masks [2 kinds (rain, snow), WEATHER_PERIOD, R, R].

    One periodic tall pattern per kind, scrolled down a little every frame, so
    particles fall smoothly and the frame at index f is fixed by (seed, f).
    """
    rng = np.random.default_rng(seed)
    s = R // VIEW
    masks = np.zeros((2, WEATHER_PERIOD, R, R), bool)
    for kind, (count, length, fall) in enumerate(((40, 3, 4), (30, 1, 1))):
        tall = np.zeros((R, R), bool)  # periodic in y: row R wraps to row 0
        for y, x in rng.integers(0, R, (count * s * s // max(s, 1), 2)):
            for k in range(length * s):  # rain: a short diagonal streak; snow: a dot
                for w in range(s):
                    tall[(y + k) % R, (x + (k if kind == 0 else 0) + w) % R] = True
        for f in range(WEATHER_PERIOD):
            masks[kind, f] = np.roll(tall, (f * fall * s) % R, axis=0)
    return masks


def _to_style(style) -> Style:
    if isinstance(style, Style):
        return style
    if isinstance(style, str):
        return parse_prompt(style)
    return Style.from_dict(style)


def _check_position(pos) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in pos)
    except (TypeError, ValueError):
        raise ValueError(f"options['position'] must be two integers (x, y) in base pixels, got {pos!r}") from None
    limit = MAX_COORD * BASE_TILE
    if abs(x) >= limit or abs(y) >= limit:
        raise ValueError(f"position {pos!r} is outside the world: |x|, |y| must be < {limit}")
    return x, y
