"""Tile art for the teacher world: one sprite atlas per style, drawn once.

Every sprite is drawn procedurally with numpy at the requested tile size, then
the style's time-of-day tint and fog are baked into the atlas, so rendering a
frame is a gather + crop with no per-pixel arithmetic. Weather particles (rain,
snow) are the only per-frame overlay.
"""
from __future__ import annotations

import numpy as np

from .style import Style

# Tile classes. The *layout* of a world (which class sits where) depends only
# on (seed, coordinates) and the player's edits; the style only changes looks.
GROUND, OBSTACLE, HAZARD, GEM, BLOCK, STUMP = range(6)
N_CLASSES = 6
N_VARIANTS = 4  # ground texture variants, so the floor is not one repeated tile
SOLID = (OBSTACLE, BLOCK)

BASE_TILE = 8  # tile size in pixels at 64x64; larger resolutions scale it

_BIOME_COLORS = {
    #             ground           ground dots      obstacle          obstacle dark     hazard            hazard light
    "grassland": ((92, 168, 72), (132, 200, 96), (40, 120, 48), (24, 72, 32), (40, 90, 200), (110, 160, 240)),
    "forest": ((54, 110, 50), (80, 140, 64), (20, 84, 40), (12, 48, 24), (30, 70, 150), (80, 120, 200)),
    "desert": ((222, 196, 130), (200, 170, 100), (70, 150, 70), (40, 100, 44), (196, 150, 80), (230, 200, 130)),
    "snow": ((230, 236, 244), (200, 212, 230), (60, 100, 90), (230, 240, 250), (40, 70, 130), (150, 190, 230)),
    "swamp": ((84, 100, 60), (60, 80, 48), (70, 60, 40), (40, 34, 24), (50, 70, 50), (90, 110, 70)),
    "volcanic": ((60, 52, 52), (90, 70, 66), (34, 28, 30), (100, 90, 90), (230, 80, 20), (255, 200, 60)),
}
# Per-channel gain and bias of each time of day (noon is the identity).
_TINT = {
    "dawn": ((1.05, 0.85, 0.80), (20, 8, 10)),
    "noon": ((1.0, 1.0, 1.0), (0, 0, 0)),
    "dusk": ((0.85, 0.65, 0.75), (18, 0, 16)),
    "night": ((0.35, 0.40, 0.65), (0, 4, 18)),
}
_FOG = (190, 190, 196), 0.45  # fog colour and how much of it mixes in


def _grid(ts: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1) of a ts x ts tile: (y, x)."""
    c = (np.arange(ts) + 0.5) / ts
    return np.meshgrid(c, c, indexing="ij")


def _ground(ts: int, colors, variant: int, rng: np.random.Generator) -> np.ndarray:
    base = np.array(colors[0], np.float32)
    img = np.broadcast_to(base, (ts, ts, 3)).copy()
    img += rng.normal(0, 5, (ts, ts, 1))  # grain, same on all channels
    y, x = _grid(ts)
    if variant:  # a few dots (flowers, pebbles, tufts) at fixed places per variant
        for cy, cx in rng.uniform(0.15, 0.85, (variant, 2)):
            img[(y - cy) ** 2 + (x - cx) ** 2 < 0.012] = colors[1]
    return img


def _sprite(cls: int, biome: str, ts: int, rng: np.random.Generator) -> np.ndarray:
    colors = _BIOME_COLORS[biome]
    img = _ground(ts, colors, 0, rng)
    y, x = _grid(ts)
    if cls == OBSTACLE:
        if biome == "desert":  # cactus: trunk and two arms
            body = (abs(x - 0.5) < 0.12) & (y > 0.15) & (y < 0.92)
            arms = ((abs(x - 0.25) < 0.08) & (y > 0.3) & (y < 0.55)) | ((abs(x - 0.75) < 0.08) & (y > 0.25) & (y < 0.5))
            img[body | arms] = colors[2]
            img[body & (abs(x - 0.5) < 0.04)] = colors[3]
        elif biome in ("forest", "snow"):  # pine: stacked triangle, snow-capped in snow
            tri = (y > 0.08) & (y < 0.82) & (abs(x - 0.5) < (y - 0.05) * 0.55)
            img[tri] = colors[2]
            img[tri & (y < 0.35)] = colors[3]
            img[(abs(x - 0.5) < 0.07) & (y >= 0.82)] = (90, 60, 30)
        elif biome == "volcanic":  # basalt boulder with a lit edge
            rock = (y - 0.55) ** 2 / 0.14 + (x - 0.5) ** 2 / 0.17 < 1
            img[rock] = colors[2]
            img[rock & ((y - 0.42) ** 2 + (x - 0.4) ** 2 < 0.03)] = colors[3]
        elif biome == "swamp":  # dead tree: trunk and bare branches
            img[(abs(x - 0.5) < 0.08) & (y > 0.2)] = colors[2]
            img[(abs(y - 0.35 - (x - 0.5)) < 0.06) & (x > 0.5) & (x < 0.85)] = colors[3]
            img[(abs(y - 0.45 + (x - 0.5)) < 0.06) & (x < 0.5) & (x > 0.15)] = colors[3]
        else:  # round leafy tree
            img[(abs(x - 0.5) < 0.08) & (y > 0.6)] = (100, 66, 36)
            canopy = (y - 0.42) ** 2 + (x - 0.5) ** 2 < 0.12
            img[canopy] = colors[2]
            img[canopy & ((y - 0.34) ** 2 + (x - 0.42) ** 2 < 0.03)] = colors[3]
    elif cls == HAZARD:
        img[:] = colors[4]
        waves = np.sin((x * 2 + y) * np.pi * 3) > 0.75  # ripples / lava cracks
        img[waves] = colors[5]
        img += rng.normal(0, 4, (ts, ts, 1))
    elif cls == GEM:
        diamond = abs(x - 0.5) + abs(y - 0.5) < 0.3
        img[diamond] = (40, 220, 230)
        img[diamond & (x + y < 0.9)] = (200, 255, 255)
    elif cls == BLOCK:  # a placed wooden crate, the same in every biome
        img[:] = (150, 100, 50)
        img[(abs(x - y) < 0.08) | (abs(x + y - 1) < 0.08)] = (110, 70, 30)
        edge = (x < 0.1) | (x > 0.9) | (y < 0.1) | (y > 0.9)
        img[edge] = (90, 56, 24)
    elif cls == STUMP:  # a chopped obstacle
        img[(y - 0.6) ** 2 + (x - 0.5) ** 2 < 0.03] = (120, 84, 44)
        img[(y - 0.6) ** 2 + (x - 0.5) ** 2 < 0.008] = (170, 130, 80)
    return img


def _player_sprites(ts: int) -> tuple[np.ndarray, np.ndarray]:
    """Player art [4 facings, ts, ts, 3] and its mask [ts, ts]; facing up/down/left/right."""
    y, x = _grid(ts)
    body = (y - 0.5) ** 2 + (x - 0.5) ** 2 < 0.16
    img = np.zeros((ts, ts, 3), np.float32)
    img[body] = (220, 40, 40)
    img[body & ((y - 0.5) ** 2 + (x - 0.5) ** 2 > 0.1)] = (250, 250, 250)  # white rim: visible on every biome
    sprites = []
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        s = img.copy()
        s[(y - 0.5 - 0.22 * dy) ** 2 + (x - 0.5 - 0.22 * dx) ** 2 < 0.012] = (20, 20, 20)  # eye: facing
        sprites.append(s)
    return np.stack(sprites), body


def _tint(img: np.ndarray, style: Style) -> np.ndarray:
    gain, bias = _TINT[style.time_of_day]
    out = img * np.array(gain, np.float32) + np.array(bias, np.float32)
    if style.weather == "fog":
        color, amount = _FOG
        out = out * (1 - amount) + np.array(color, np.float32) * amount
    if style.weather in ("rain", "snow"):
        out *= 0.88  # overcast
    return np.clip(out, 0, 255).round().astype(np.uint8)


class Atlas:
    """Sprites for one style at one tile size, tint and fog baked in.

    `tiles[cls * N_VARIANTS + variant]` is a [ts, ts, 3] uint8 tile; only ground
    uses variants, other classes repeat their sprite across the variant slots.
    """

    def __init__(self, style: Style, tile_size: int):
        ts = tile_size  # art is seeded per sprite: it never depends on the world seed
        tiles = []
        for cls in range(N_CLASSES):
            for v in range(N_VARIANTS):
                if cls == GROUND:
                    tiles.append(_ground(ts, _BIOME_COLORS[style.biome], v, np.random.default_rng(v)))
                else:
                    tiles.append(_sprite(cls, style.biome, ts, np.random.default_rng(cls)))
        self.tiles = _tint(np.stack(tiles), style)  # [N_CLASSES * N_VARIANTS, ts, ts, 3]
        player, self.player_mask = _player_sprites(ts)
        self.player = _tint(player, style.replace(time_of_day="noon"))  # [4, ts, ts, 3]; lit at night too
        particle = (140, 160, 220) if style.weather == "rain" else (250, 250, 255)
        self.particle = _tint(np.array(particle, np.float32)[None], style.replace(weather="clear"))[0]

