"""Crafter checkpoints (`game.env = "crafter"`, issue 18) measured against the real game.

Crafter has no prompt, no biome and no teacher atlas, so `run_eval` runs the sections that
have ground truth and reports the others (revisit, adherence, ablations, heads) as skipped:

- fidelity: the model's free rollout against Crafter's frames under the same actions (the
  explore policy, hazards avoided; Crafter's night zombies still end episodes, so
  `worlds_per_horizon` says how many worlds a horizon averages), with the frozen start frame,
  the tokenizer's round trip (the ceiling), one-step teacher-forced predictions and the
  copy-previous baseline (also over the frames where the camera moved; and split into the
  world view's pixels the previous true frame showed and the edge a move brings in), seen content kept
  (PSNR over the pixels whose world tile the start frame showed), the player sprite kept and
  the status bar kept and drawn by horizon;
- stability: one long free rollout of random actions: no NaN, every frame's mean/std within
  the real frames' ranges (+-15 levels, x0.5-1.5), the player kept, flat cost; the share of
  frames whose status bar is drawn.

Player and status bar are judged by nearest neighbours among tiles of *real* frames of
reference worlds (`RANGE_SEED_BASE + k`, never eval seeds) and of Crafter's own renderer, so
nothing is fitted to a model:
- player kept: the frame's player tile (column 4, row 3) is nearer (MSE) to some real player
  tile than to every real tile of the world view where the player is not;
- status bar kept: each of the 16 tiles of the bottom two rows is named by its nearest status
  tile (every tile Crafter's own renderer draws there, `bar_renders`); the bar is kept when
  every name equals the true frame's (the right counts);
- status bar drawn: every one of the 16 tiles is drawn as a status tile its slot can show (each
  item has its own slot): nearer to it than half-way to that tile's nearest other status tile
  (so the tile is named without doubt; half the distance is +6 dB of PSNR), and health never
  empty (a living player's; the true frame a player dies on fails), fixed from the game's
  renderer alone, as the teacher's tile validity is from its atlases. A legible bar,
  whatever counts it shows: the true counts at h64 depend on pickups the real game rolls (a
  sapling is a 10% chance on each USE of grass), so "kept" cannot reach 1 there for any model;
  "drawn" asks whether the bar is still a bar. (Crafter's bar tiles are small icons on black,
  so a bar faded to its mean colour is near a row of empty slots: health is what rejects it.)
"""

from __future__ import annotations

import functools
import time
from typing import Sequence

import numpy as np
import torch

from .config import PSNR_CAP, RANGE_SEED_BASE, EvalConfig, Game
from .content import masked_psnr, shown_edge_psnr
from .metrics import mean_or_none, psnr, ssim
from .rollouts import Episode, model_rollout, teacher_forced, teacher_run

TILE = 8                     # pixels per Crafter tile (envs.crafter: one tile = one token)
VIEW_ROWS, COLS = 6, 8       # the world view's tiles; two status-bar rows below
PLAYER = (3, 4)              # (row, column) of the player's tile: Crafter's grid // 2
STATUS_Y = VIEW_ROWS * TILE  # first pixel row of the status bar
REFERENCE_WORLDS, REFERENCE_FRAMES = 12, 300
CRAFTER = Game(64, "tile", "crafter")


def crafter_run(seed: int, T: int, actions: Sequence[int] | None = None) -> Episode:
    """Play Crafter for T frames: the given actions, else the explore policy (hazards avoided);
    frames after the player died repeat the last frame (`alive` says where it ended)."""
    return teacher_run(seed, T, CRAFTER, actions)


def _tiles(frames: np.ndarray, rows: range, cols: range) -> np.ndarray:
    """uint8 [T, 64, 64, 3] -> float32 [T, len(rows) * len(cols), 192] tiles, row-major."""
    T = len(frames)
    grid = frames.reshape(T, 8, TILE, 8, TILE, 3).transpose(0, 1, 3, 2, 4, 5)  # [T, 8, 8, 8, 8, 3]
    return grid[:, rows][:, :, cols].reshape(T, len(rows) * len(cols), -1).astype(np.float32)


def _nearest(x: np.ndarray, lib: np.ndarray) -> np.ndarray:
    """[N, D] x [M, D] -> [N] index of each row's nearest library row (squared distance)."""
    xt, lt = torch.from_numpy(x), torch.from_numpy(lib)
    d = (lt * lt).sum(1)[None] - 2 * xt @ lt.T  # + |x|^2, the same for every library row
    return d.argmin(1).numpy()


@functools.lru_cache(maxsize=1)
def bar_renders() -> np.ndarray:
    """uint8 [11, 64, 64, 3]: Crafter's own render of one world with every inventory item at count
    0 (an empty slot), 1 .. 9 and 10 (the glyph it draws for more than 9). Crafter gives each item
    a fixed slot (health, food, drink, energy, then sapling, wood, ... in its item order) and
    draws the bar undimmed, so these are every tile the bar can show."""
    from envs.crafter import CrafterEnv

    env = CrafterEnv()
    env.reset(seed=RANGE_SEED_BASE)
    inventory = env._game._player.inventory  # Crafter's own dict: its renderer reads it as is
    frames = []
    for n in range(11):
        inventory.update(dict.fromkeys(inventory, n))
        frames.append(env._game.render())
    return np.stack(frames)


@functools.lru_cache(maxsize=1)
def tile_library() -> dict[str, np.ndarray]:
    """Real tiles: player tiles and world tiles without the player (at most 20,000) from reference
    worlds; the distinct status-bar tiles `status` [M, 192], `status_slots` bool [16, M], which of
    them each slot can show (`bar_renders`), and `status_thresholds` [M] (`status_thresholds`)."""
    rng = np.random.default_rng(0)
    player, world = [], []
    for k in range(REFERENCE_WORLDS):
        ep = crafter_run(RANGE_SEED_BASE + k, REFERENCE_FRAMES)
        tiles = _tiles(ep.frames[:ep.alive + 1], range(VIEW_ROWS), range(COLS))
        p = PLAYER[0] * COLS + PLAYER[1]
        player.append(tiles[:, p])
        world.append(np.delete(tiles, p, axis=1).reshape(-1, tiles.shape[-1]))
    world_all = np.concatenate(world)
    world_all = world_all[rng.choice(len(world_all), min(20_000, len(world_all)), replace=False)]
    bars = _tiles(bar_renders(), range(VIEW_ROWS, 8), range(COLS))  # [11, 16, 192]
    status, which = np.unique(bars.reshape(-1, bars.shape[-1]), axis=0, return_inverse=True)
    slots = np.zeros((bars.shape[1], len(status)), bool)
    slots[np.tile(np.arange(bars.shape[1]), len(bars)), which.reshape(-1)] = True
    slots[0, which.reshape(bars.shape[:2])[0, 0]] = False  # a living player's health slot is never empty
    return {"player": np.unique(np.concatenate(player), axis=0), "world": world_all,
            "status": status, "status_slots": slots, "status_thresholds": status_thresholds(status)}


def player_kept(frames: np.ndarray, lib: dict) -> np.ndarray:
    """uint8 [T, 64, 64, 3] -> bool [T]: the player's tile is nearest to a real player tile."""
    p = _tiles(frames, range(PLAYER[0], PLAYER[0] + 1), range(PLAYER[1], PLAYER[1] + 1))[:, 0]
    return _nearest(p, np.concatenate([lib["player"], lib["world"]])) < len(lib["player"])


def status_names(frames: np.ndarray, lib: dict) -> np.ndarray:
    """uint8 [T, 64, 64, 3] -> int [T, 16]: each status-bar tile named by its nearest real one."""
    s = _tiles(frames, range(VIEW_ROWS, 8), range(COLS))
    return _nearest(s.reshape(-1, s.shape[-1]), lib["status"]).reshape(len(frames), -1)


def _psnr_to(x: np.ndarray, lib: np.ndarray) -> np.ndarray:
    """[N, D] x [M, D] uint8-range floats -> [N, M] PSNR (dB, capped) of each row against each library row."""
    xt, lt = torch.from_numpy(x).double(), torch.from_numpy(lib).double()  # float64: exact matches stay exact
    mse = ((xt * xt).sum(1, keepdim=True) - 2 * xt @ lt.T + (lt * lt).sum(1)[None]).clamp(min=0) / x.shape[1]
    with np.errstate(divide="ignore"):
        return np.minimum(10 * np.log10(255.0**2 / mse.numpy()), PSNR_CAP)


def status_thresholds(status: np.ndarray) -> np.ndarray:
    """status [M, 192] -> float [M]: per status tile, the dB a drawn tile needs to be named it: its PSNR
    against its nearest other status tile + 6.02 dB (half that distance; fixed from the game's renderer)."""
    db = _psnr_to(status, status)
    np.fill_diagonal(db, -np.inf)
    return db.max(1) + 20 * np.log10(2.0)


def status_bar_drawn(frames: np.ndarray, lib: dict) -> np.ndarray:
    """uint8 [T, 64, 64, 3] -> bool [T]: every status-bar tile is named without doubt as a status tile
    its slot can show (`tile_library`'s status_thresholds and status_slots)."""
    s = _tiles(frames, range(VIEW_ROWS, 8), range(COLS))  # [T, 16, 192]
    db = _psnr_to(s.reshape(-1, s.shape[-1]), lib["status"]).reshape(*s.shape[:2], -1)  # [T, 16, M]
    named = (db >= lib["status_thresholds"]) & lib["status_slots"][None]
    return named.any(-1).all(-1)


def seen_mask(pos_t, pos_0) -> np.ndarray:
    """bool [64, 64]: pixels of the frame at `pos_t` whose world tile the frame at `pos_0` showed,
    world view only, the player's tile of either frame left out. Positions in pixels (tile x 8)."""
    (x, y), (x0, y0) = (p // TILE for p in pos_t), (p // TILE for p in pos_0)
    rows, cols = np.arange(VIEW_ROWS), np.arange(COLS)
    wy, wx = y - PLAYER[0] + rows, x - PLAYER[1] + cols  # world tile of each screen tile
    tiles = ((wy >= y0 - PLAYER[0]) & (wy < y0 - PLAYER[0] + VIEW_ROWS))[:, None] & \
            ((wx >= x0 - PLAYER[1]) & (wx < x0 - PLAYER[1] + COLS))[None, :]
    tiles[PLAYER] = False
    ry, rx = PLAYER[0] + y0 - y, PLAYER[1] + x0 - x  # where the start frame's player stood
    if 0 <= ry < VIEW_ROWS and 0 <= rx < COLS:
        tiles[ry, rx] = False
    mask = np.zeros((8, 8), bool)
    mask[:VIEW_ROWS] = tiles
    return np.repeat(np.repeat(mask, TILE, 0), TILE, 1)


def reproject_view(frame: np.ndarray, pos_from, pos_to) -> np.ndarray:
    """uint8 [64, 64, 3] seen from `pos_from` -> the same world as seen from `pos_to` (pixel
    positions, tile x 8): the view's tiles moved with the camera, tiles it did not show left 0,
    the status bar as it was. What copying the previous frame exactly gives after a move."""
    dx, dy = ((b - a) // TILE for a, b in zip(pos_from, pos_to))  # tiles the camera moved
    out = frame.copy()
    out[:STATUS_Y] = 0
    if abs(dy) < VIEW_ROWS and abs(dx) < COLS:
        rows, cols = VIEW_ROWS - abs(dy), COLS - abs(dx)  # tiles both views show
        (ty, sy), (tx, sx) = (max(0, -dy), max(0, dy)), (max(0, -dx), max(0, dx))  # first target / source tile
        out[ty * TILE:(ty + rows) * TILE, tx * TILE:(tx + cols) * TILE] = \
            frame[sy * TILE:(sy + rows) * TILE, sx * TILE:(sx + cols) * TILE]
    return out


def teacher_forced_split(eps: list[Episode], tf: np.ndarray, true: np.ndarray, ceiling: np.ndarray,
                         alive: np.ndarray) -> dict:
    """Teacher-forced PSNR over the world view's pixels the previous true frame showed (a model
    can know them) and over the edge a move brings in (unknown world unless remembered), each
    beside the tokenizer's ceiling over the same pixels, and over the shown pixels the previous
    true frame moved with the camera. The names and meaning of the teacher's split
    (`fidelity._teacher_forced_split`); both player tiles and the status bar are left out.
    tf, ceiling [B, T, 64, 64, 3], true [B, T + 1, 64, 64, 3], alive bool [B, T]."""
    T = tf.shape[1]
    target = true[:, 1:]
    shown = np.stack([np.stack([seen_mask(e.positions[t + 1], e.positions[t]) for t in range(T)]) for e in eps])
    moved = np.stack([np.stack([reproject_view(f[t], e.positions[t], e.positions[t + 1]) for t in range(T)])
                      for f, e in zip(true, eps)])
    edge = ~shown
    edge[:, :, STATUS_Y:] = False
    y, x = PLAYER[0] * TILE, PLAYER[1] * TILE
    edge[:, :, y:y + TILE, x:x + TILE] = False
    return shown_edge_psnr(tf, ceiling, moved, target, shown, edge, alive)


def eval_crafter_fidelity(model, ev: EvalConfig, text, seeds: list[int], steps) -> tuple[dict, dict]:
    """The fidelity section for a Crafter checkpoint (names as in the teacher's where they match)."""
    T = max(ev.horizons)
    eps = [crafter_run(s, T) for s in seeds]
    true = np.stack([e.frames for e in eps])  # [B, T + 1, 64, 64, 3]
    prompts = [text(e.caption) for e in eps]
    actions = np.stack([e.actions for e in eps])
    gen = model_rollout(model, true[:, 0], prompts, actions, seeds, steps, desc="fidelity", progress=ev.progress)
    alive = np.array([e.alive for e in eps])[:, None] >= np.arange(1, T + 1)[None]  # [B, T]
    live = lambda v: np.where(alive, v, np.nan)  # noqa: E731
    by_h = lambda v: {str(h): mean_or_none(live(v)[:, h - 1]) for h in ev.horizons}  # noqa: E731
    with torch.no_grad():
        tok = model.tokenizer
        flat = torch.from_numpy(true[:, 1:].reshape(-1, *true.shape[2:])).to(model.device)
        tokens = [tok.encode(c) for c in flat.split(256)]
        recon = torch.cat([tok.decode(z) for z in tokens]).cpu().numpy().reshape(true[:, 1:].shape)
        snapped = None
        if model.cfg.sampler.snap:
            snapped = torch.cat([tok.decode(tok.snap(z)) for z in tokens]).cpu().numpy().reshape(true[:, 1:].shape)
    lib = tile_library()
    B = len(eps)
    per_world = lambda fn, frames: np.stack([fn(frames[b], lib) for b in range(B)])  # noqa: E731
    true_names = per_world(status_names, true[:, 1:])
    status_ok = lambda frames: (per_world(status_names, frames) == true_names).all(-1)  # noqa: E731
    seen = np.stack([np.stack([seen_mask(e.positions[t], e.positions[0]) for t in range(1, T + 1)]) for e in eps])
    seen_psnr = lambda frames: np.stack([masked_psnr(frames[b], true[b, 1:], seen[b]) for b in range(B)])  # noqa: E731
    frozen = np.repeat(true[:, :1], T, 1)
    p, s = live(psnr(gen[:, 1:], true[:, 1:])), live(ssim(gen[:, 1:], true[:, 1:]))
    out = {"psnr_by_horizon": by_h(p), "ssim_by_horizon": by_h(s),
           "fidelity_detail": {
               "policy": "explore (Crafter, hazards avoided)", "game": "crafter",
               "frozen_start_frame_psnr_by_horizon": by_h(psnr(frozen, true[:, 1:])),
               "tokenizer_psnr_heldout": mean_or_none(live(psnr(recon, true[:, 1:]))),
               "tokenizer_psnr_snapped_heldout": None if snapped is None else mean_or_none(
                   live(psnr(snapped, true[:, 1:]))),
               "worlds_per_horizon": {str(h): int(alive[:, h - 1].sum()) for h in ev.horizons},
               "psnr_curve": [mean_or_none(p[:, t]) for t in range(T)],
               "ssim_curve": [mean_or_none(s[:, t]) for t in range(T)],
               "seen_psnr_by_horizon": by_h(seen_psnr(gen[:, 1:])),
               "seen_share_by_horizon": by_h(seen.mean(axis=(2, 3))),
               "seen_psnr_tokenizer_by_horizon": by_h(seen_psnr(recon)),
               "player_visible_by_horizon": by_h(per_world(player_kept, gen[:, 1:])),
               "player_visible_tokenizer": mean_or_none(live(per_world(player_kept, recon))),
               "player_visible_true": mean_or_none(live(per_world(player_kept, true[:, 1:]))),
               "status_bar_kept_by_horizon": by_h(status_ok(gen[:, 1:])),
               "status_bar_kept_tokenizer": mean_or_none(live(status_ok(recon))),
               # the start frame's bar held still: how often the true counts have not changed yet
               "status_bar_kept_frozen_by_horizon": by_h(status_ok(frozen)),
               "status_bar_drawn_by_horizon": by_h(per_world(status_bar_drawn, gen[:, 1:])),
               "status_bar_drawn_tokenizer": mean_or_none(live(per_world(status_bar_drawn, recon))),
               "status_bar_drawn_true": mean_or_none(live(per_world(status_bar_drawn, true[:, 1:]))),
               "status_bar_psnr_by_horizon": by_h(psnr(gen[:, 1:, STATUS_Y:], true[:, 1:, STATUS_Y:])),
               "status_bar_psnr_frozen_by_horizon": by_h(psnr(frozen[:, :, STATUS_Y:], true[:, 1:, STATUS_Y:]))}}
    tf_T = min(ev.teacher_forced_frames, T)
    tf = teacher_forced(model, true[:, :tf_T + 1], prompts, actions[:, :tf_T], seeds, steps)
    target, prev = true[:, 1:tf_T + 1], true[:, :tf_T]
    tf_alive = alive[:, :tf_T]
    # Crafter's daylight changes every frame, so "moved" is the camera's move (the player's
    # tile changed), the frames where copying the previous frame is wrong
    pos = np.array([e.positions[:tf_T + 1] for e in eps])  # [B, tf_T + 1, 2]
    moved = tf_alive & (pos[:, 1:] != pos[:, :-1]).any(-1)
    tf_live = lambda v, m=tf_alive: mean_or_none(np.where(m, v, np.nan))  # noqa: E731
    out["fidelity_detail"].update({
        "teacher_forced_frames": tf_T,
        "teacher_forced_psnr": tf_live(psnr(tf, target)), "teacher_forced_ssim": tf_live(ssim(tf, target)),
        "copy_previous_psnr": tf_live(psnr(prev, target)),
        "teacher_forced_moved_share": tf_live(moved),
        "teacher_forced_psnr_moved": tf_live(psnr(tf, target), moved),
        "copy_previous_psnr_moved": tf_live(psnr(prev, target), moved),
        "teacher_forced_player_visible": tf_live(per_world(player_kept, tf)),
        **teacher_forced_split(eps, tf, true[:, :tf_T + 1], (recon if snapped is None else snapped)[:, :tf_T],
                               tf_alive)})
    cols = [0, *ev.horizons]
    art = {"strip_true": true[:2, cols], "strip_gen": gen[:2, cols], "strip_cols": cols,
           "strip_tf": tf[:2, :min(tf_T, 8)]}
    return out, art


@torch.no_grad()
def eval_crafter_stability(model, ev: EvalConfig, text, seed: int, steps) -> dict:
    """One long free rollout of uniform random Crafter actions from a real start frame."""
    from tqdm import tqdm

    N = ev.stability_frames
    A = model.cfg.dit.num_actions
    start = crafter_run(seed, 0)
    actions = torch.from_numpy(np.random.default_rng(seed).integers(0, A, (N, 1), dtype=np.int64))
    state = model.init_state(1, text(start.caption), [seed], first_frame=torch.from_numpy(start.frames[:1]))
    lib = tile_library()
    stats, player, bar = np.empty((N, 2)), np.empty(N, bool), np.empty(N, bool)
    finite, cpu, wall = np.empty(N, bool), np.empty(N), np.empty(N)
    for i in tqdm(range(N), desc="stability", disable=not ev.progress, mininterval=1.0, leave=False):
        t0, c0 = time.perf_counter(), time.process_time()
        out = model.step(state, actions[i], steps)
        wall[i], cpu[i] = time.perf_counter() - t0, time.process_time() - c0
        frame = out.frame.cpu().numpy()
        stats[i] = frame.mean(), frame.std()
        player[i] = player_kept(frame, lib)[0]
        bar[i] = status_bar_drawn(frame, lib)[0]
        finite[i] = bool(torch.isfinite(out.reward).all() & torch.isfinite(out.done_prob).all())
    real = np.concatenate([ep.frames[:ep.alive + 1] for ep in
                           (crafter_run(RANGE_SEED_BASE + k, REFERENCE_FRAMES) for k in range(4))])
    rm, rs = real.mean(axis=(1, 2, 3)), real.std(axis=(1, 2, 3))
    lo_m, hi_m, lo_s, hi_s = rm.min() - 15.0, rm.max() + 15.0, rs.min() * 0.5, rs.max() * 1.5
    m, s = stats[:, 0], stats[:, 1]
    out_of_range = int(((m < lo_m) | (m > hi_m) | (s < lo_s) | (s > hi_s)).sum())
    k = min(1000, N // 4)
    flat = float(np.median(cpu[-k:]) / np.median(cpu[:k]))
    bad = np.flatnonzero(~finite)
    r = {"frames": N, "nan_free": not len(bad), "first_nan_frame": int(bad[0]) + 1 if len(bad) else None,
         "range_ok": out_of_range == 0, "out_of_range_frames": out_of_range,
         "frame_mean_range": [float(m.min()), float(m.max())], "frame_std_range": [float(s.min()), float(s.max())],
         "allowed_mean_range": [float(lo_m), float(hi_m)], "allowed_std_range": [float(lo_s), float(hi_s)],
         "latency_ms_p50": float(np.median(wall) * 1000),
         "latency_ratio_last_first": float(wall[-k:].mean() / wall[:k].mean()),
         "cpu_ratio_last_first_p50": flat, "ratio_window_frames": k, "flat_ok": flat <= ev.flat_ratio_max,
         "flat_ratio_max": ev.flat_ratio_max,
         "player_visible_share": float(player.mean()),
         "player_visible_share_first_last": [float(player[:k].mean()), float(player[-k:].mean())],
         "player_ok": bool(player.mean() >= ev.player_visible_min), "player_visible_min": ev.player_visible_min,
         "status_bar_drawn_share": float(bar.mean()),
         "status_bar_drawn_share_first_last": [float(bar[:k].mean()), float(bar[-k:].mean())]}
    r["ok"] = r["nan_free"] and r["range_ok"] and r["flat_ok"] and r["player_ok"]
    return r
