"""Calibrating `game.spawn_gain`: a dream's new ground holds as many collectibles as the teacher's.

An agent trained in World-v0 learns from short dreams that start at a teacher frame (issue 17:
32 steps). Whatever the start frame shows, the dream pays where the teacher does; ground that
comes into view later holds only what the spawn table places (world/spawn.py), and at the counted
rate far fewer collectibles than the teacher's (thirty-third session), so in the dream exploring
does not pay. The counted rate is right for a tile's neighbour in the recordings; how many the
dream shows also depends on which tokens the spawn rule may fill (`game.spawn_on`) and which
codes the dream draws beside its edge. So the gain is measured:

1. `teacher_walks`: a walker that goes somewhere (the explore policy with long holds and few
   NOOPs) plays the teacher game from calibration seeds (CALIBRATION_SEED_BASE + i: never an eval,
   proxy or recording seed), `steps` keys each. Every tile cell a frame shows is read as the
   style's atlas reads it (`GemSeeker.classes`), at its place relative to the start view; over
   the places outside the start view (new ground), the last class seen: `density`, the share of
   new-ground places that hold a gem.
2. `dream_walks`: the same keys replayed in the model from the same start frame, caption and seed
   (as World-v0 starts with start="teacher"), places by the tile map's own camera; a world stops
   where the done head passes EVENT_THRESHOLD, as a World-v0 episode ends. Also counted: pay per
   1,000 steps in new ground (where the teacher stood), which mixes in how often the dream blocks
   keys the teacher let through (a fifth of them), so it is reported, not matched.
3. `calibrate`: dream density over the teacher's, at gain 1, then at the gain that ratio asks for,
   then by a power law through the last two points; the measured gain whose ratio lies closest to
   1 wins. A place that takes a collectible at one gain takes it at every larger gain
   (`Spawn.place`), so density grows with the gain.

Teacher game in tile-step motion only (a tile is a token, so the view is the token grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .evaluate.config import EVENT_THRESHOLD

CALIBRATION_SEED_BASE = 60_000
"""Calibration world i is teacher seed 60_000 + i (eval 90_000 +, proxy 70_000 +, range 80_000 +)."""
MAX_GAIN = 64.0


@dataclass
class Walks:
    """The teacher's walks, padded to `steps` keys: actions int64 [W, T] (NOOP after an end),
    alive bool [W, T] (the teacher played step t), new bool [W, T] (the player stood in new
    ground after step t), paid bool [W, T]; firsts uint8 [W, R, R, 3] the start frames; captions,
    styles and seeds one per walk; places int, gems int: the new-ground places the walks showed,
    and those that held a gem."""

    actions: np.ndarray
    alive: np.ndarray
    new: np.ndarray
    paid: np.ndarray
    firsts: np.ndarray
    captions: list[str]
    styles: list
    seeds: list[int]
    places: int = 0
    gems: int = 0


class NewGround:
    """One walk's new-ground places (outside the start view), each with the last class a frame
    showed there. Views are given by their top-left place; the player's cell is left out."""

    def __init__(self, style, resolution: int, grid: int):
        from .evaluate.seeker import GemSeeker

        self.reader = GemSeeker(style, resolution, resolution // grid, np.random.default_rng(0))
        self.grid, self.seen = grid, {}

    def add(self, frame: np.ndarray, top: int, left: int) -> None:
        classes, g = self.reader.classes(frame), self.grid  # [g, g]; the player's cell reads as ground
        for r in range(g):
            for c in range(g):
                y, x = top + r, left + c
                if (r, c) != (g // 2, g // 2) and not (0 <= y < g and 0 <= x < g):
                    self.seen[y, x] = int(classes[r, c])

    def count(self) -> tuple[int, int]:
        """-> (places, of them holding a gem)."""
        from .tiles import GEM

        return len(self.seen), sum(c == GEM for c in self.seen.values())


def teacher_walks(game, resolution: int, grid: int, walks: int, steps: int, seed_base: int = CALIBRATION_SEED_BASE,
                  progress: bool = False) -> Walks:
    """`walks` explore walks of `steps` keys in the teacher game (game: a world.config.GameConfig in
    tile motion; grid tokens a side = tiles in view)."""
    from tqdm import tqdm

    from .games import make_game
    from .policies import ExplorePolicy
    from .style import Style

    W, T = walks, steps
    out = Walks(np.zeros((W, T), np.int64), np.zeros((W, T), bool), np.zeros((W, T), bool), np.zeros((W, T), bool),
                np.zeros((W, resolution, resolution, 3), np.uint8), [], [], [])
    env = make_game(game, resolution)
    for w in tqdm(range(W), desc="teacher walks", disable=not progress):
        seed = seed_base + w
        frame, info = env.reset(seed=seed)
        walker = ExplorePolicy(env, np.random.default_rng(seed), mean_hold=8.0, noop_prob=0.05)
        walker.reset(info)
        x0, y0 = info["tile"]
        out.firsts[w] = frame
        out.seeds.append(seed)
        out.captions.append(info["caption"])
        out.styles.append(Style(**info["style"]))
        ground = NewGround(out.styles[-1], resolution, grid)
        for t in range(T):
            out.actions[w, t] = action = walker.act(info)
            frame, reward, terminated, truncated, info = env.step(action)
            dx, dy = info["tile"][0] - x0, info["tile"][1] - y0
            out.alive[w, t], out.paid[w, t] = True, reward > 0
            out.new[w, t] = not (0 <= dx + grid // 2 < grid and 0 <= dy + grid // 2 < grid)
            ground.add(frame, dy, dx)
            if terminated or truncated:
                break
        places, gems = ground.count()
        out.places, out.gems = out.places + places, out.gems + gems
    env.close()
    return out


@torch.no_grad()
def dream_walks(model, walks: Walks, text, batch: int = 64, sampling_steps: int | None = None,
                progress: bool = False) -> dict:
    """The walks' keys replayed in the model -> {"places", "gems", "density"} of its new ground,
    and its pay in the teacher's new-ground steps {"new_steps", "paid", "per_1000"}."""
    from tqdm import tqdm

    W, T = walks.actions.shape
    grid = model.cfg.tokenizer.grid_size
    paid, alive = np.zeros((W, T), bool), np.zeros((W, T), bool)
    places = gems = 0
    for lo in tqdm(range(0, W, batch), desc="dream walks", disable=not progress):
        hi = min(W, lo + batch)
        state = model.init_state(hi - lo, [text(c) for c in walks.captions[lo:hi]], walks.seeds[lo:hi],
                                 first_frame=torch.from_numpy(walks.firsts[lo:hi]))
        start = state.tile_map["origin"].clone()  # [b, 2] (y, x) of the start view's top-left token
        grounds = [NewGround(walks.styles[w], walks.firsts.shape[1], grid) for w in range(lo, hi)]
        live = walks.alive[lo:hi, 0].copy()
        for t in range(T):
            live &= walks.alive[lo:hi, t]
            if not live.any():
                break
            out = model.step(state, torch.from_numpy(walks.actions[lo:hi, t]), sampling_steps)
            alive[lo:hi, t] = live
            paid[lo:hi, t] = live & (out.reward.numpy() > EVENT_THRESHOLD)
            top = (state.tile_map["origin"] - start).tolist()
            for b in np.nonzero(live)[0]:
                grounds[b].add(out.frame[b].numpy(), *top[b])
            live &= out.done_prob.numpy() <= EVENT_THRESHOLD
        for g in grounds:
            p, n = g.count()
            places, gems = places + p, gems + n
    return {"places": places, "gems": gems, "density": gems / max(places, 1), **_rate(paid, alive, walks.new)}


def _rate(paid: np.ndarray, alive: np.ndarray, new: np.ndarray) -> dict:
    steps, pays = int((alive & new).sum()), int((paid & alive & new).sum())
    return {"new_steps": steps, "paid": pays, "per_1000": 1000.0 * pays / max(steps, 1)}


def calibrate(model, text, walks: int = 256, steps: int = 32, iterations: int = 3, batch: int = 64,
              seed_base: int = CALIBRATION_SEED_BASE, progress: bool = False) -> dict:
    """Fit `model.cfg.game.spawn_gain` in place (model: a WorldModel with game.spawn in tile
    motion; text: the prompt encoder) -> {"gain", "teacher", "points": [{gain, places, gems,
    density, ratio, new_steps, paid, per_1000}], walks, steps, seed_base}."""
    cfg = model.cfg
    if model.spawn is None:
        raise ValueError("the checkpoint places no collectibles (game.spawn is off): nothing to calibrate")
    if cfg.game.env != "teacher" or cfg.game.motion != "tile":
        raise ValueError("calibrating the spawn gain needs the teacher game in tile-step motion")
    if walks < 1 or steps < 1 or iterations < 1:
        raise ValueError(f"walks, steps and iterations must be >= 1, got {walks}, {steps}, {iterations}")
    w = teacher_walks(cfg.game, cfg.tokenizer.image_size, cfg.tokenizer.grid_size, walks, steps, seed_base, progress)
    teacher = {"places": w.places, "gems": w.gems, "density": w.gems / max(w.places, 1),
               **_rate(w.paid, w.alive, w.new)}
    if not w.gems:
        raise ValueError(f"the teacher showed no gem in the new ground of {walks} walks of {steps} steps: "
                         "nothing to calibrate against (more --calibrate-walks or steps)")
    points, gain = [], 1.0
    for _ in range(iterations):
        cfg.game.spawn_gain = gain
        point = {"gain": gain, **dream_walks(model, w, text, batch, progress=progress)}
        point["ratio"] = point["density"] / teacher["density"]
        points.append(point)
        gain = _next_gain(points)
        if gain is None:
            break
    best = min(points, key=lambda p: abs(math.log(p["ratio"])) if p["ratio"] > 0 else math.inf)
    cfg.game.spawn_gain = best["gain"]
    return {"gain": best["gain"], "teacher": teacher, "points": points, "walks": walks, "steps": steps,
            "seed_base": seed_base}


def _next_gain(points: list[dict]) -> float | None:
    """The next gain to measure: pay taken as proportional to the gain from one point, as a power
    law through the last two; None when the last point is on target or nothing new can be learned."""
    last = points[-1]
    if last["ratio"] == 1.0:
        return None
    if last["ratio"] == 0.0:
        return None if last["gain"] >= MAX_GAIN else min(MAX_GAIN, 4.0 * last["gain"])
    slope = 1.0
    if len(points) > 1:
        prev = points[-2]
        if prev["ratio"] > 0 and prev["gain"] != last["gain"]:
            slope = math.log(last["ratio"] / prev["ratio"]) / math.log(last["gain"] / prev["gain"])
        if not 0.1 <= slope <= 2.0:  # noise or saturation: fall back to proportional
            slope = 1.0
    gain = min(MAX_GAIN, max(1.0 / MAX_GAIN, last["gain"] * last["ratio"] ** (-1.0 / slope)))
    return None if any(math.isclose(gain, p["gain"], rel_tol=0.02) for p in points) else gain
