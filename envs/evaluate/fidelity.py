"""Section 1, fidelity by horizon: the model's free rollout against the teacher's frames."""

from __future__ import annotations

import numpy as np
import torch

from .config import EvalConfig, Game, PSNR_CAP
from .content import (player_box, reproject, seen_and_invented, shared_mask, shown_edge_psnr, tile_census,
                      tile_threshold)
from .metrics import mean_or_none, psnr, ssim
from .reference import player_psnr
from .rollouts import Episode, model_rollout, teacher_forced, teacher_run


def eval_fidelity(model, ev: EvalConfig, text, seeds: list[int], steps, game: Game,
                  ref: dict | None = None, tag: str = "") -> tuple[dict, dict]:
    T = max(ev.horizons)
    eps = [teacher_run(s, T, game) for s in seeds]
    true = np.stack([e.frames for e in eps])  # [B, T + 1, R, R, 3]
    gen = model_rollout(model, true[:, 0], [text(e.caption) for e in eps], np.stack([e.actions for e in eps]),
                        seeds, steps, desc=f"fidelity{tag}", progress=ev.progress)
    alive = np.array([e.alive for e in eps])[:, None] >= np.arange(1, T + 1)[None]  # [B, T]
    p = np.where(alive, psnr(gen[:, 1:], true[:, 1:]), np.nan)
    s = np.where(alive, ssim(gen[:, 1:], true[:, 1:]), np.nan)
    # References: a model that freezes the start frame, and the tokenizer's round trip of
    # the true frames (no generated frame can beat the decoder it is drawn through).
    frozen = np.where(alive, psnr(np.repeat(true[:, :1], T, 1), true[:, 1:]), np.nan)
    with torch.no_grad():
        tok = model.tokenizer
        flat = torch.from_numpy(true[:, 1:].reshape(-1, *true.shape[2:])).to(model.device)
        tokens = [tok.encode(c) for c in flat.split(256)]
        recon = torch.cat([tok.decode(z) for z in tokens]).cpu().numpy()
        snapped = None  # a model that snaps its frames onto the codebook is bounded by that round trip
        if model.cfg.sampler.snap:
            snapped = torch.cat([tok.decode(tok.snap(z)) for z in tokens]).cpu().numpy()
    recon = recon.reshape(true[:, 1:].shape)  # [B, T, R, R, 3]
    snapped = None if snapped is None else snapped.reshape(recon.shape)
    recon_psnr = psnr(recon, true[:, 1:])  # [B, T]
    snapped_psnr = None if snapped is None else psnr(snapped, true[:, 1:])
    ceiling = np.where(alive, recon_psnr, np.nan)
    out = {"psnr_by_horizon": {str(h): mean_or_none(p[:, h - 1]) for h in ev.horizons},
           "ssim_by_horizon": {str(h): mean_or_none(s[:, h - 1]) for h in ev.horizons},
           "fidelity_detail": {"policy": "explore (teacher, no hazard slips)",
                               "frozen_start_frame_psnr_by_horizon": {str(h): mean_or_none(frozen[:, h - 1])
                                                                      for h in ev.horizons},
                               "tokenizer_psnr_heldout": mean_or_none(ceiling),
                               "tokenizer_psnr_snapped_heldout": None if snapped is None else mean_or_none(
                                   np.where(alive, snapped_psnr, np.nan)),
                               "worlds_per_horizon": {str(h): int(alive[:, h - 1].sum()) for h in ev.horizons},
                               "psnr_curve": [mean_or_none(p[:, t]) for t in range(T)],
                               "ssim_curve": [mean_or_none(s[:, t]) for t in range(T)]}}
    if ref is not None:  # share of worlds whose frame at horizon h still shows the player
        def seen(frames: np.ndarray) -> np.ndarray:  # [B, T] 1/0, NaN after an episode ended
            shown = np.stack([player_psnr(f, e.style, motion=game.motion)
                              for f, e in zip(frames, eps)]) >= ref["player_threshold"]
            return np.where(alive, shown, np.nan)

        gen_seen, recon_seen = seen(gen[:, 1:]), seen(recon)
        out["fidelity_detail"]["player_visible_by_horizon"] = {str(h): mean_or_none(gen_seen[:, h - 1])
                                                               for h in ev.horizons}
        out["fidelity_detail"]["player_visible_tokenizer"] = mean_or_none(recon_seen)
    out["fidelity_detail"].update(_content(ev, eps, gen, true, recon, snapped, alive, game))
    tf_T = min(ev.teacher_forced_frames, T)
    tf = teacher_forced(model, true[:, :tf_T + 1], [text(e.caption) for e in eps],
                        np.stack([e.actions[:tf_T] for e in eps]), seeds, steps)
    tf_alive = alive[:, :tf_T]
    target = true[:, 1:tf_T + 1]
    tf_psnr = psnr(tf, target)  # [B, tf_T]
    copy_psnr = psnr(true[:, :tf_T], target)  # the baseline a model must beat to have learned motion
    out["fidelity_detail"].update({
        "teacher_forced_frames": tf_T,
        "teacher_forced_psnr": mean_or_none(np.where(tf_alive, tf_psnr, np.nan)),
        "teacher_forced_ssim": mean_or_none(np.where(tf_alive, ssim(tf, target), np.nan)),
        "copy_previous_psnr": mean_or_none(np.where(tf_alive, copy_psnr, np.nan))})
    # Frames that changed (a move, not a NOOP or a wall): an unchanged frame scores the 100 dB cap
    # when copied, which swamps a mean in dB, so motion is judged on these alone.
    moved = tf_alive & (copy_psnr < PSNR_CAP)
    out["fidelity_detail"].update({
        "teacher_forced_moved_share": mean_or_none(np.where(tf_alive, moved, np.nan)),
        "teacher_forced_psnr_moved": mean_or_none(np.where(moved, tf_psnr, np.nan)),
        "copy_previous_psnr_moved": mean_or_none(np.where(moved, copy_psnr, np.nan))})
    if game.motion == "tile":
        out["fidelity_detail"].update(_camera_follows(eps, tf, true[:, :tf_T + 1], tf_alive, game))
    ceiling_psnr = recon_psnr if snapped_psnr is None else snapped_psnr
    out["fidelity_detail"].update(_teacher_forced_split(
        eps, tf, true[:, :tf_T + 1], recon[:, :tf_T], None if snapped is None else snapped[:, :tf_T], tf_alive, game,
        (tf_psnr, ceiling_psnr[:, :tf_T])))
    thr = tile_threshold(game.resolution)["threshold_db"]
    tf_objects, true_objects = (np.stack([tile_census(f, e.positions[1:tf_T + 1], e.style, game.resolution,
                                                      game.motion, thr)[1] for f, e in zip(frames, eps)])
                                for frames in (tf, target))
    out["fidelity_detail"].update({  # objects drawn with the true past as context: dynamics, not drift
        "teacher_forced_object_share": mean_or_none(np.where(tf_alive, tf_objects, np.nan)),
        "teacher_forced_object_share_true": mean_or_none(np.where(tf_alive, true_objects, np.nan))})
    if ref is not None:
        shown = np.stack([player_psnr(f, e.style, motion=game.motion) for f, e in zip(tf, eps)])
        out["fidelity_detail"]["teacher_forced_player_visible"] = mean_or_none(
            np.where(tf_alive, shown >= ref["player_threshold"], np.nan))
    cols = [0, *ev.horizons]
    art = {"strip_true": true[:2, cols], "strip_gen": gen[:2, cols], "strip_cols": cols,
           "strip_tf": tf[:2, :min(tf_T, 8)]}
    return out, art


def _camera_follows(eps: list[Episode], tf: np.ndarray, true: np.ndarray, alive: np.ndarray, game: Game) -> dict:
    """Does the model move the view as the teacher's camera did, given the true past? Each
    teacher-forced frame is explained by the one-tile move (or none) of the previous true frame
    that fits it best (pixel error over what the moved frame covers, both frames' player tiles
    left out: `content.shared_mask`),
    the model's frame as the true one. Judged only where the true frame says which move it was
    (its own best fit is the teacher's move and every other move fits at least twice as badly: a
    uniform field fits every move alike): the share of frames where the model's move agrees, over
    the frames where the player walked, and over the blocked ones (a move into an obstacle: the
    teacher's view stays; a model that only follows the key moves it anyway).
    tf [B, T, R, R, 3], true [B, T + 1, R, R, 3]."""
    from envs.tiles import BASE_TILE
    from world.actions import MOVES

    T, R = tf.shape[1], game.resolution
    steps = [(dx * BASE_TILE, dy * BASE_TILE) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    judged, agree, walked, blocked = (np.zeros(alive.shape, bool) for _ in range(4))
    for b, e in enumerate(eps):
        for t in range(T):
            (x, y), nxt = tuple(e.positions[t]), tuple(e.positions[t + 1])
            prev, model_next, true_next = (f.astype(np.float32) for f in (true[b, t], tf[b, t], true[b, t + 1]))
            fit_model, fit_true = [], []
            for dx, dy in steps:
                moved = reproject(prev, (x, y), (x + dx, y + dy), R, game.motion)
                mask = shared_mask((x + dx, y + dy), (x, y), R, game.motion)  # what the moved frame covers
                fit_model.append(((model_next - moved) ** 2)[mask].mean())
                fit_true.append(((true_next - moved) ** 2)[mask].mean())
            move = (nxt[0] - x, nxt[1] - y)
            k = steps.index(move) if move in steps else -1  # -1: not a one-tile move (a restart)
            judged[b, t] = k >= 0 and fit_true[k] * 2 + 1 <= np.delete(np.array(fit_true), k).min()
            agree[b, t] = int(np.argmin(fit_model)) == k
            walked[b, t] = nxt != (x, y)
            blocked[b, t] = not walked[b, t] and int(e.actions[t]) in MOVES
    live = alive & judged
    share = lambda where: mean_or_none(np.where(live & where, agree, np.nan))  # noqa: E731
    return {"teacher_forced_camera_agrees": share(np.ones_like(live)),
            "teacher_forced_camera_agrees_walked": share(walked),
            "teacher_forced_camera_agrees_blocked": share(blocked),
            "teacher_forced_camera_blocked_frames": int((live & blocked).sum()),  # what that share rests on
            "teacher_forced_camera_judged_share": mean_or_none(np.where(alive, judged, np.nan)),
            "teacher_forced_blocked_share": mean_or_none(np.where(alive, blocked, np.nan))}


def _weathers(eps: list[Episode]) -> np.ndarray | None:
    """The weather of each world [B] (str), or None where the game has no weather (Crafter)."""
    if all(getattr(e.style, "weather", None) for e in eps):
        return np.array([e.style.weather for e in eps])
    return None


def _teacher_forced_split(eps: list[Episode], tf: np.ndarray, true: np.ndarray, recon: np.ndarray,
                          snapped: np.ndarray | None, alive: np.ndarray, game: Game,
                          whole_psnr: tuple[np.ndarray, np.ndarray]) -> dict:
    """Teacher-forced PSNR over the pixels the previous true frame showed (a model can know them)
    and over the rest (the edge a move brings in: unknown world, unless the model remembers it),
    each beside the tokenizer's ceiling over the same pixels (snapped when the model snaps) and,
    over the shown pixels, the previous true frame moved with the camera (an exact copy: what
    changes in place, the falling rain and snow, is what it misses). tf, recon, snapped [B, T, R, R, 3],
    true [B, T + 1, R, R, 3]; the player's tile is left out of both. In the teacher's worlds
    also the whole-frame teacher-forced PSNR and its ceiling per weather, from whole_psnr (both
    [B, T], already computed by the caller)."""
    T, R = tf.shape[1], game.resolution
    target = true[:, 1:]
    shown = np.stack([np.stack([shared_mask(e.positions[t + 1], e.positions[t], R, game.motion) for t in range(T)])
                      for e in eps])  # [B, T, R, R]
    moved = np.stack([np.stack([reproject(f[t], e.positions[t], e.positions[t + 1], R, game.motion)
                                for t in range(T)]) for f, e in zip(true, eps)])  # [B, T, R, R, 3]
    edge = ~shown
    py, px, ts = player_box(R, game.motion)
    edge[:, :, py:py + ts, px:px + ts] = False
    ceiling = recon if snapped is None else snapped
    out = shown_edge_psnr(tf, ceiling, moved, target, shown, edge, alive)
    weather = _weathers(eps)
    if weather is not None:
        # rain and snow are a screen-space overlay that falls a fraction of a token a frame, over
        # the world that moves with the camera: the pixels least like a copy, apart per weather
        for key, frame_psnr in zip(("teacher_forced_psnr_by_weather", "tokenizer_psnr_by_weather"), whole_psnr):
            score = np.where(alive, frame_psnr, np.nan)  # [B, T]
            out[key] = {w: mean_or_none(score[weather == w]) for w in sorted(set(weather))}
    return out


def _content(ev: EvalConfig, eps: list[Episode], gen: np.ndarray, true: np.ndarray, recon: np.ndarray,
             snapped: np.ndarray | None, alive: np.ndarray, game: Game) -> dict:
    """Seen content kept, invented content persists, tile validity (envs/evaluate/content.py), by horizon;
    the tile validity of the true frames through the codebook (snapped [B, T, R, R, 3], when the model
    snaps) by horizon too: the ceiling of a snapping model on the same frames."""
    R, motion, lag = game.resolution, game.motion, ev.invented_lag
    recon_full = np.concatenate([true[:, :1], recon], 1)
    per = [seen_and_invented(g, t, e.positions, R, motion, lag) for g, t, e in zip(gen, true, eps)]
    tok = [seen_and_invented(r, t, e.positions, R, motion, lag)["seen"] for r, t, e in zip(recon_full, true, eps)]
    thr = tile_threshold(R)["threshold_db"]
    census = {name: [tile_census(f[1:], e.positions[1:], e.style, R, motion, thr) for f, e in zip(frames, eps)]
              for name, frames in (("gen", gen), ("true", true), ("tok", recon_full))
              + ((("snap", np.concatenate([true[:, :1], snapped], 1)),) if snapped is not None else ())}
    valid = {name: np.stack([c[0] for c in cs]) for name, cs in census.items()}  # [B, T] each
    objects = {name: np.stack([c[1] for c in cs]) for name, cs in census.items()}

    def by_h(values: np.ndarray, worlds: np.ndarray | slice = slice(None)) -> dict:
        """[B, T] -> {h: mean over the live worlds (of `worlds`: a bool [B] selection)}"""
        v = np.where(alive, values, np.nan)[worlds]
        return {str(h): mean_or_none(v[:, h - 1]) for h in ev.horizons}

    out, weather = {}, _weathers(eps)
    if weather is not None:
        # the misses of tile validity are weather's: rain and snow drawn over a tile, through the codebook
        for key, name in (("tile_valid_by_weather", "gen"), ("tile_valid_snapped_by_weather", "snap")):
            if name in valid:
                out[key] = {w: by_h(valid[name], weather == w) for w in sorted(set(weather))}
    stack = lambda key: np.stack([p[key] for p in per])  # noqa: E731
    return out | {"seen_psnr_by_horizon": by_h(stack("seen")), "seen_share_by_horizon": by_h(stack("seen_share")),
            "seen_psnr_tokenizer_by_horizon": by_h(np.stack(tok)),
            "invented_lag": lag, "invented_psnr_by_horizon": by_h(stack("invented")),
            "invented_psnr_teacher_by_horizon": by_h(stack("invented_teacher")),
            "invented_share_by_horizon": by_h(stack("invented_share")),
            "tile_valid_by_horizon": by_h(valid["gen"]),
            "tile_valid_teacher": mean_or_none(np.where(alive, valid["true"], np.nan)),
            "tile_valid_tokenizer": mean_or_none(np.where(alive, valid["tok"], np.nan)),
            "tile_valid_snapped_by_horizon": by_h(valid["snap"]) if "snap" in valid else None,
            "object_share_by_horizon": by_h(objects["gen"]),
            "object_share_teacher_by_horizon": by_h(objects["true"]),
            "tile_threshold": tile_threshold(R)}
