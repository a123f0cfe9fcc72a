"""Part of section 6, heads: what an agent that learned to walk to gems earns in the dream.

The heads' scores say whether the dream pays where it should; they cannot say whether the dream
has gems to pay for, or lets an agent reach them. A scripted gem seeker answers that: it reads
only the frame it is shown (each tile cell matched to the style's atlas tiles), walks to the
nearest gem it sees (the longer axis first; when that way is blocked, the other axis, else a
random move) and otherwise keeps walking straight, turning now and then. It plays the teacher
and the dream from the same start frame and seed, `seeker_steps` steps each (an episode ends at
a hazard in the teacher, where the done head passes 0.5 in the dream, as in World-v0):

- `teacher` / `dream`: {steps, rewards, `reward_per_1000` (gems collected per 1,000 steps played),
  `gem_frames` (the share of frames where the seeker saw a gem), `paid_on_gem_share` (of the
  rewards, those paid for a step onto a cell the frame showed as a gem), `gem_stepons_paid` (of
  the steps onto a shown gem, those paid)};
- `share`: the dream's gems per step over the teacher's, the ceiling of what an agent trained in
  World-v0 learns to collect (issue 17 asks 70% of the teacher-trained agent's gems).

A gem the dream gives back when the player steps off it (the tile map once did) shows here as a
dream paying far more than the teacher. Teacher game, tile-step motion only (a cell is a tile).
"""

from __future__ import annotations

import numpy as np
import torch

from world.actions import DOWN, LEFT, MOVES, RIGHT, UP

from .config import EVENT_THRESHOLD, EvalConfig, Game
from .content import atlas_classes, cell_match, tile_threshold

LOOSE_DB = 6.0
"""A cell within tile_threshold - LOOSE_DB dB of the gem tile counts as a gem: a gem the dream
draws a little off still draws the seeker to it."""
TURN_PROB = 0.1  # chance per step of a new straight-walk direction when no gem is in sight
STEP = {UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1)}


class GemSeeker:
    """The scripted agent: frame uint8 [R, R, 3] in, action out; one per world."""

    def __init__(self, style, resolution: int, tile: int, rng: np.random.Generator):
        from envs.tiles import GEM

        self.tiles, self.cls = atlas_classes(style, resolution)
        self.gem, self.tile, self.rng = GEM, tile, rng
        self.n = resolution // tile
        self.min_db = tile_threshold(resolution)["threshold_db"] - LOOSE_DB
        self.heading, self.last, self.blocked, self.saw = UP, None, False, False

    def classes(self, frame: np.ndarray) -> np.ndarray:
        """-> int [n, n]: each cell's atlas class (ground where nothing matches well); the
        player's cell (the centre) is ground."""
        n, t = self.n, self.tile
        cells = frame.reshape(n, t, n, t, 3).transpose(0, 2, 1, 3, 4).astype(np.float32)
        db, best = cell_match(cells, self.tiles)
        out = np.where(db >= self.min_db, self.cls[best], 0)
        out[n // 2, n // 2] = 0
        return out

    def act(self, frame: np.ndarray) -> tuple[int, bool]:
        """-> (action, whether it walks onto a cell the frame shows as a gem)."""
        c, mid = self.classes(frame), self.n // 2
        gy, gx = np.nonzero(c == self.gem)
        self.saw = bool(len(gy))
        if len(gy):
            i = int(np.argmin(np.abs(gy - mid) + np.abs(gx - mid)))
            dy, dx = int(gy[i]) - mid, int(gx[i]) - mid
            ver = None if dy == 0 else (DOWN if dy > 0 else UP)
            hor = None if dx == 0 else (RIGHT if dx > 0 else LEFT)
            act = ver if ver is not None and (hor is None or abs(dy) >= abs(dx)) else hor
            if self.blocked and act == self.last:
                other = hor if act == ver else ver
                act = other if other is not None else int(self.rng.choice(MOVES))
        else:
            if self.blocked or self.rng.random() < TURN_PROB:
                self.heading = int(self.rng.choice(MOVES))
            act = self.heading
        sy, sx = STEP[act]
        return act, bool(c[mid + sy, mid + sx] == self.gem)

    def observe(self, before: np.ndarray, after: np.ndarray, act: int) -> None:
        self.last, self.blocked = act, bool(np.array_equal(before, after))


def _summary(reward: np.ndarray, onto: np.ndarray, saw: np.ndarray, alive: np.ndarray) -> dict:
    """A run's record (`_blank`, each [B, T]) -> its figures."""
    steps = int(alive.sum())
    paid = (reward > EVENT_THRESHOLD) & alive  # a classifier head pays 1, a regressed one its value
    stepons = onto & alive
    return {"steps": steps, "rewards": int(paid.sum()),
            "reward_per_1000": 1000.0 * float(paid.sum()) / max(steps, 1),
            "gem_frames": float(saw[alive].mean()) if steps else None,
            "paid_on_gem_share": float((paid & onto).sum() / paid.sum()) if paid.any() else None,
            "gem_stepons_paid": float((paid & onto).sum() / stepons.sum()) if stepons.any() else None}


def _blank(B: int, T: int) -> dict[str, np.ndarray]:
    """Per world and step: reward paid, stepped onto a shown gem, a gem in sight, step played."""
    return {"reward": np.zeros((B, T), np.float32), "onto": np.zeros((B, T), bool),
            "saw": np.zeros((B, T), bool), "alive": np.zeros((B, T), bool)}


def _teacher(game: Game, seeds: list[int], T: int, tile: int):
    """The seeker in the real game, world by world -> (record, first frames, captions, styles)."""
    from envs.games import make_game
    from envs.style import Style

    rec, firsts, captions, styles = _blank(len(seeds), T), [], [], []
    for b, seed in enumerate(seeds):
        env = make_game(game, game.resolution)
        frame, info = env.reset(seed=seed)
        firsts.append(frame)
        captions.append(info["caption"])
        styles.append(Style(**info["style"]))
        agent = GemSeeker(styles[b], game.resolution, tile, np.random.default_rng(seed))
        for t in range(T):
            act, rec["onto"][b, t] = agent.act(frame)
            rec["saw"][b, t] = agent.saw
            nxt, rec["reward"][b, t], terminated, truncated, _ = env.step(act)
            rec["alive"][b, t] = True
            agent.observe(frame, nxt, act)
            frame = nxt
            if terminated or truncated:
                break
        env.close()
    return rec, np.stack(firsts), captions, styles


def _dream(model, prompts: list, seeds: list[int], firsts: np.ndarray, styles: list, T: int, tile: int, steps):
    """The seeker in the model's worlds, all in one batch; a world ends where the done head
    passes EVENT_THRESHOLD (0.5, as World-v0's episodes do)."""
    B, R = len(seeds), firsts.shape[1]
    rec = _blank(B, T)
    state = model.init_state(B, prompts, list(seeds), first_frame=torch.from_numpy(firsts))
    agents = [GemSeeker(styles[b], R, tile, np.random.default_rng(s)) for b, s in enumerate(seeds)]
    frames, live = firsts, np.ones(B, bool)
    for t in range(T):
        acts = np.zeros(B, np.int64)
        for b in np.nonzero(live)[0]:
            acts[b], rec["onto"][b, t] = agents[b].act(frames[b])
            rec["saw"][b, t] = agents[b].saw
        out = model.step(state, torch.from_numpy(acts), steps)
        nxt = out.frame.numpy()
        rec["alive"][:, t] = live
        rec["reward"][:, t] = np.where(live, out.reward.numpy(), 0.0)
        for b in np.nonzero(live)[0]:
            agents[b].observe(frames[b], nxt[b], int(acts[b]))
        live = live & (out.done_prob.numpy() <= EVENT_THRESHOLD)
        frames = nxt
        if not live.any():
            break
    return rec


@torch.no_grad()
def eval_seeker(model, ev: EvalConfig, text, seeds: list[int], steps, game: Game) -> dict:
    """The seeker in the teacher and in the dream, one world per seed, `ev.seeker_steps` steps."""
    if game.env != "teacher" or game.motion != "tile":
        raise ValueError("the gem seeker needs the teacher game in tile-step motion")
    T, tile = ev.seeker_steps, game.resolution // model.cfg.tokenizer.grid_size
    teacher, firsts, captions, styles = _teacher(game, seeds, T, tile)
    dream = _dream(model, [text(c) for c in captions], seeds, firsts, styles, T, tile, steps)
    runs = {name: _summary(**rec) for name, rec in (("teacher", teacher), ("dream", dream))}
    t_rate, d_rate = runs["teacher"]["reward_per_1000"], runs["dream"]["reward_per_1000"]
    return {"worlds": len(seeds), "steps": T, **runs, "share": d_rate / t_rate if t_rate > 0 else None}
