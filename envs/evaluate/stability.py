"""Section 4, stability: one long free rollout, checked against the teacher's ranges."""

from __future__ import annotations

import time

import numpy as np
import torch

from .config import EvalConfig, Game, TEACHER_ACTIONS
from .reference import player_psnr
from .rollouts import teacher_run


@torch.no_grad()
def eval_stability(model, ev: EvalConfig, text, seed: int, steps, game: Game, ref: dict) -> dict:
    from tqdm import tqdm

    N = ev.stability_frames
    from .content import tile_threshold, tile_validity

    actions = torch.from_numpy(np.random.default_rng(seed).integers(0, TEACHER_ACTIONS, (N, 1), dtype=np.int64))
    # the teacher under the same actions gives the tile grid's offset (tile mode: always aligned)
    ep = teacher_run(seed, N, game, actions=actions[:, 0].numpy())
    state = model.init_state(1, text(ep.caption), [seed], first_frame=torch.from_numpy(ep.frames[:1]))
    tile_thr = tile_threshold(game.resolution)["threshold_db"]
    tiles = np.empty(N)  # share of valid tile cells per frame
    stats = torch.empty(N, 2)  # frame mean, std
    player = np.empty(N)  # player-sprite PSNR
    finite = torch.empty(N, dtype=torch.bool)
    wall, cpu = np.empty(N), np.empty(N)
    nan_state_at = None
    for i in tqdm(range(N), desc="stability", disable=not ev.progress, mininterval=1.0, leave=False):
        t0, c0 = time.perf_counter(), time.process_time()
        out = model.step(state, actions[i], steps)
        f = out.frame.float()
        stats[i, 0], stats[i, 1] = f.mean(), f.std(correction=0)
        frame = out.frame.cpu().numpy()
        player[i] = player_psnr(frame, ep.style, motion=game.motion)[0]
        tiles[i] = tile_validity(frame, ep.positions[i + 1:i + 2], ep.style, game.resolution, game.motion, tile_thr)[0]
        finite[i] = torch.isfinite(out.reward).all() & torch.isfinite(out.done_prob).all()
        wall[i], cpu[i] = time.perf_counter() - t0, time.process_time() - c0
        if (i % 500 == 499 or i == N - 1) and nan_state_at is None:
            tensors = [state.cache.k, state.cache.v, *state.memory.values()]
            if not all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point()):
                nan_state_at = i + 1
    bad = (~finite).nonzero()
    first_nan = int(bad[0, 0]) + 1 if len(bad) else nan_state_at
    m, s = stats[:, 0].numpy(), stats[:, 1].numpy()
    lo_m, hi_m = ref["mean"][0] - 15.0, ref["mean"][1] + 15.0
    lo_s, hi_s = ref["std"][0] * 0.5, ref["std"][1] * 1.5
    out_of_range = int(((m < lo_m) | (m > hi_m) | (s < lo_s) | (s > hi_s)).sum())
    k = min(1000, N // 4)
    flat = float(np.median(cpu[-k:]) / np.median(cpu[:k]))
    visible = player >= ref["player_threshold"]
    r = {"frames": N, "nan_free": first_nan is None, "first_nan_frame": first_nan,
         "range_ok": out_of_range == 0, "out_of_range_frames": out_of_range,
         "frame_mean_range": [float(m.min()), float(m.max())], "frame_std_range": [float(s.min()), float(s.max())],
         "teacher_mean_range": list(ref["mean"]), "teacher_std_range": list(ref["std"]),
         "allowed_mean_range": [lo_m, hi_m], "allowed_std_range": [lo_s, hi_s],
         "latency_ms_p50": float(np.median(wall) * 1000),
         "latency_ratio_last_first": float(wall[-k:].mean() / wall[:k].mean()),
         "latency_ratio_last_first_p50": float(np.median(wall[-k:]) / np.median(wall[:k])),
         "cpu_ratio_last_first_p50": flat, "ratio_window_frames": k,
         "flat_ok": flat <= ev.flat_ratio_max, "flat_ratio_max": ev.flat_ratio_max,
         "player_visible_share": float(visible.mean()),
         "player_visible_share_first_last": [float(visible[:k].mean()), float(visible[-k:].mean())],
         "player_psnr_p50": float(np.median(player)), "player_threshold": ref["player_threshold"],
         "player_present_p1": ref["player_present_p1"], "player_absent_p99": ref["player_absent_p99"],
         "player_ok": bool(visible.mean() >= ev.player_visible_min), "player_visible_min": ev.player_visible_min,
         "tile_valid_share": float(tiles.mean()),
         "tile_valid_share_first_last": [float(tiles[:k].mean()), float(tiles[-k:].mean())]}
    r["ok"] = r["nan_free"] and r["range_ok"] and r["flat_ok"] and r["player_ok"]
    return r
