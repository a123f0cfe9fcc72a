"""Infinite, seeded terrain: the tile class at any (x, y) from (seed, x, y) alone.

The world is cut into CHUNK x CHUNK tile chunks generated on first sight from
integer hashes (splitmix64) and value noise, so a place looks the same however
the player got there and whenever they come back. Chunks are cached in a
bounded LRU (memory stays flat on endless walks); the player's edits live in a
separate dict and are re-applied when an evicted chunk is regenerated.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .tiles import GEM, GROUND, HAZARD, N_VARIANTS, OBSTACLE

CHUNK = 16  # tiles per chunk side
NOISE_CELL = 8  # tiles between value-noise lattice points: the size of lakes and groves
MAX_COORD = 2**40  # tile coordinates beyond this are refused (hash inputs stay exact)

_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _splitmix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wraps mod 2**64 by design)."""
    with np.errstate(over="ignore"):
        z = (z + _M1).astype(np.uint64)
        z = (z ^ (z >> np.uint64(30))) * _M2
        z = (z ^ (z >> np.uint64(27))) * _M3
        return z ^ (z >> np.uint64(31))


def hash_uniform(seed: int, x: np.ndarray, y: np.ndarray, salt: int) -> np.ndarray:
    """A uniform float in [0, 1) for every (x, y), fixed by (seed, salt)."""
    with np.errstate(over="ignore"):
        xu = np.asarray(x, np.int64).astype(np.uint64)
        yu = np.asarray(y, np.int64).astype(np.uint64)
        h = _splitmix(xu * np.uint64(0x1F1F1F1F1F1F1F1F) ^ _splitmix(yu ^ np.uint64(salt * 0x5851F42D)))
        h = _splitmix(h ^ np.uint64(seed & 0xFFFFFFFFFFFFFFFF))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _value_noise(seed: int, tx: np.ndarray, ty: np.ndarray, salt: int) -> np.ndarray:
    """Smooth noise in [0, 1]: hashed lattice values, smoothstep-interpolated."""
    gx, fx = np.divmod(tx, NOISE_CELL)
    gy, fy = np.divmod(ty, NOISE_CELL)
    u = fx / NOISE_CELL
    v = fy / NOISE_CELL
    u, v = u * u * (3 - 2 * u), v * v * (3 - 2 * v)
    c00 = hash_uniform(seed, gx, gy, salt)
    c10 = hash_uniform(seed, gx + 1, gy, salt)
    c01 = hash_uniform(seed, gx, gy + 1, salt)
    c11 = hash_uniform(seed, gx + 1, gy + 1, salt)
    return (c00 * (1 - u) + c10 * u) * (1 - v) + (c01 * (1 - u) + c11 * u) * v


def generate_chunk(seed: int, cx: int, cy: int) -> np.ndarray:
    """Tile codes [CHUNK, CHUNK] (rows = y) of chunk (cx, cy): class * N_VARIANTS + variant."""
    ty, tx = np.meshgrid(np.arange(CHUNK) + cy * CHUNK, np.arange(CHUNK) + cx * CHUNK, indexing="ij")
    wet = _value_noise(seed, tx, ty, salt=1)  # lakes / lava pools where high
    growth = _value_noise(seed, tx, ty, salt=2)  # groves where high
    r = hash_uniform(seed, tx, ty, salt=3)
    cls = np.full((CHUNK, CHUNK), GROUND, np.int64)
    cls[(growth > 0.55) & (r < (growth - 0.45) * 1.6)] = OBSTACLE
    cls[(cls == GROUND) & (r > 0.985)] = GEM
    cls[wet > 0.78] = HAZARD
    variant = (hash_uniform(seed, tx, ty, salt=4) * N_VARIANTS).astype(np.int64)
    variant[cls != GROUND] = 0
    return (cls * N_VARIANTS + variant).astype(np.int16)


class TileMap:
    """Tile codes of one world (seed) with the player's persistent edits."""

    def __init__(self, seed: int, max_chunks: int = 4096):
        self.seed = int(seed)
        self.max_chunks = max_chunks
        self._chunks: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.edits: dict[tuple[int, int], int] = {}  # (tx, ty) -> tile code

    def _chunk(self, cx: int, cy: int) -> np.ndarray:
        key = (cx, cy)
        chunk = self._chunks.get(key)
        if chunk is None:
            chunk = generate_chunk(self.seed, cx, cy)
            for (tx, ty), code in self.edits.items():
                if tx // CHUNK == cx and ty // CHUNK == cy:
                    chunk[ty - cy * CHUNK, tx - cx * CHUNK] = code
            self._chunks[key] = chunk
            if len(self._chunks) > self.max_chunks:
                self._chunks.popitem(last=False)
        else:
            self._chunks.move_to_end(key)
        return chunk

    def code(self, tx: int, ty: int) -> int:
        return int(self._chunk(tx // CHUNK, ty // CHUNK)[ty % CHUNK, tx % CHUNK])

    def cls(self, tx: int, ty: int) -> int:
        return self.code(tx, ty) // N_VARIANTS

    def set_class(self, tx: int, ty: int, cls: int) -> None:
        code = cls * N_VARIANTS
        self.edits[(tx, ty)] = code
        self._chunk(tx // CHUNK, ty // CHUNK)[ty % CHUNK, tx % CHUNK] = code

    def block(self, tx0: int, ty0: int, w: int, h: int) -> np.ndarray:
        """Tile codes [h, w] of the rectangle whose top-left tile is (tx0, ty0)."""
        out = np.empty((h, w), np.int16)
        for cy in range(ty0 // CHUNK, (ty0 + h - 1) // CHUNK + 1):
            y0, y1 = max(ty0, cy * CHUNK), min(ty0 + h, (cy + 1) * CHUNK)
            for cx in range(tx0 // CHUNK, (tx0 + w - 1) // CHUNK + 1):
                x0, x1 = max(tx0, cx * CHUNK), min(tx0 + w, (cx + 1) * CHUNK)
                out[y0 - ty0 : y1 - ty0, x0 - tx0 : x1 - tx0] = self._chunk(cx, cy)[
                    y0 - cy * CHUNK : y1 - cy * CHUNK, x0 - cx * CHUNK : x1 - cx * CHUNK
                ]
        return out
