"""One place drawn in two looks: what world/restyle.py learns a prompt switch from.

The teacher draws its view in any style without changing the game (`TeacherEnv.render_style`),
so every pair is exact: the same tiles, player and weather frame, in look A and in look B. Look B
keeps each of A's fields with probability `keep` (the field is then marked -1, "keep": what a
prompt that does not name it, or that the restyle's read is unsure of, asks for).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .style import CHOICES, FIELDS, Style, caption, sample_style
from .teacher import TeacherEnv

FIELD_SIZES = tuple(len(CHOICES[f]) for f in FIELDS)  # (6, 4, 4): the checkpoint's game.restyle
MOVES = 5  # NOOP and the four moves: the walk between two pairs of one world
LEAVE_OUT = 0.3  # the reads' captions leave out each field this often: a prompt need not name all three


class StylePairs(NamedTuple):
    frames_a: np.ndarray  # uint8 [F, R, R, 3]
    frames_b: np.ndarray  # uint8 [F, R, R, 3] the same place in look B
    values_b: np.ndarray  # int64 [F, 3] look B's value index per field (FIELDS order), -1: kept from A


def values(style: Style) -> list[int]:
    """A style's value index per field, in FIELDS order."""
    return [CHOICES[f].index(getattr(style, f)) for f in FIELDS]


def render_pairs(worlds: int, per_world: int, seed: int = 0, resolution: int = 64, motion: str = "tile",
                 keep: float = 0.3) -> StylePairs:
    """`worlds` teacher worlds (seeds seed, seed + 1, ...), each with a random look A, walked at random;
    every 1-11 steps the view is drawn in A and in a random look B."""
    rng = np.random.default_rng(seed)
    env = TeacherEnv(resolution=resolution, motion=motion)
    a, b, v = [], [], []
    for w in range(worlds):
        look_a = sample_style(rng)
        env.reset(seed=seed + w, options={"style": look_a})
        for _ in range(per_world):
            for _ in range(int(rng.integers(1, 12))):
                env.step(int(rng.integers(0, MOVES)))
            look_b, kept = sample_style(rng), rng.random(len(FIELDS)) < keep
            look_b = look_b.replace(**{f: getattr(look_a, f) for f, k in zip(FIELDS, kept) if k})
            a.append(env.render_style(look_a))
            b.append(env.render_style(look_b))
            v.append([-1 if k else i for i, k in zip(values(look_b), kept)])
    return StylePairs(np.stack(a), np.stack(b), np.asarray(v, np.int64))


def captions(count: int, seed: int = 0, heldout: bool = False, part: str = "all",
             omit: float = 0.0) -> tuple[list[str], np.ndarray]:
    """`count` captions of random styles (train wording, a part of it: `style.caption`, or the
    held-out paraphrases) and their value indices int64 [count, 3] (-1: left out): what the
    restyle's reads are fitted (and judged) on. omit: the chance that a caption leaves out each
    field (at least one is named)."""
    rng = np.random.default_rng(seed)
    out, described = [], []
    for _ in range(count):
        style = sample_style(rng)
        left = [f for f in FIELDS if rng.random() < omit]
        left = left if len(left) < len(FIELDS) else left[:-1]
        out.append(caption(style, rng, heldout=heldout, part=part, omit=tuple(left)))
        described.append([-1 if f in left else v for f, v in zip(FIELDS, values(style))])
    return out, np.asarray(described, np.int64)
