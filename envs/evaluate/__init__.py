"""`echo-infinity eval`: a world-model checkpoint measured against the teacher game.

The teacher is the ground truth: same seed + same actions -> the exact frames
the model should draw. Every number below compares the model's frames with the
teacher's on held-out seeds (`EVAL_SEEDS`: 90_000 + i, never used by training
recordings, see `training_env_seeds`). Each model rollout starts from the
teacher's first frame (written as frame 0 of the world) with the teacher's
caption as prompt, the model's noise seeded with the same seed, and the
teacher's actions; worlds of one section are stepped together as one batch.

Metrics (frame-level, RGB uint8, 8-bit range):
- PSNR = 10 log10(255^2 / MSE) over all pixels and channels of one frame,
  capped at `PSNR_CAP` = 100 dB (identical frames), averaged in dB.
- SSIM (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5), 'valid'
  borders, K1 = 0.01, K2 = 0.03, L = 255, per RGB channel, then the mean
  (the pytorch-msssim / skimage `gaussian_weights=True` convention, population
  variances).

Sections (`--skip` any of SECTIONS):
1. fidelity: the teacher's `explore` policy (hazard slips off) plays each
   eval seed for max(horizons) frames; PSNR/SSIM of generated vs true frame h
   (h frames after the start frame) for h in horizons, mean over seeds.
2. revisit: scripted trajectories per seed: a lead-in walk of `lead_in`
   frames (so the place left is not the sink frame 0), then out one direction
   for A/2 frames, back A/2 frames, then `return_frames` NOOP frames at the
   place left; A = 2, 4, 8 x window_frames. Directions are searched so the
   teacher does not die and (preferably) is never blocked and ends exactly
   where it left. Score: PSNR of those last `return_frames` frames vs truth,
   for every memory policy (window, sink, compress, evolving) on the same
   weights. Also the consistency PSNR of the return frames vs the model's own
   frame at departure (the teacher's own value as reference).
3. adherence: a CNN biome classifier (envs/biome_classifier.py) trained on
   teacher frames judges generated frames. (a) every biome x seed: start from
   a teacher frame of that biome, prompt with a caption of it (train wording,
   and separately a held-out paraphrase), roll `adherence_frames` frames;
   share of generated frames classified as that biome. (b) after
   `switch_after` frames the prompt switches to another biome: the share of
   the `switch_frames` frames after the switch classified as the new biome,
   and the share at the last of them. The classifier on the teacher's own
   frames under the same actions and switch gives the reference ceiling.
4. stability: one world, `stability_frames` frames of uniform random teacher
   actions: no NaN (reward/done heads every frame, memory and cache every
   500), every frame's mean within the teacher's range +-15 levels and its
   std within [0.5 x min, 1.5 x max] of the teacher's (measured on teacher
   frames of all 96 styles), the player still drawn (below) in at least
   `player_visible_min` of the frames, and flat cost: median per-frame CPU
   time of the last k frames / first k (k = min(1000, frames // 4)) <=
   `flat_ratio_max`.
   The player check: the teacher always draws the player sprite in the
   centre, so a frame whose centre no longer matches the sprite (PSNR over
   the sprite's pixels below a threshold midway between true frames, p1,
   and sprite-sized patches where the player is not, p99) has collapsed,
   however normal its mean and std look. The fidelity section reports the
   same check by horizon, and for the tokenizer's round trip (its ceiling).
5. ablations: evolving memory with `memory.updates=False` (queries stay at
   query_init) on the revisit metric, vs full updates; with a second
   checkpoint (`--compare-checkpoint`, e.g. trained with memory.rope=
   "absolute") its fidelity, revisit (its own policy) and stability under
   `rope`.
6. heads: the reward and done heads against the teacher's gem pickups and
   hazard ends (`heads_worlds` worlds of `heads_frames` explore frames, hazard
   slips at `heads_slip`), teacher-forced and free-running: precision, recall,
   and the share of the dream's reward paid where the teacher pays nothing
   (envs/evaluate/heads.py); and a scripted gem seeker's gems per step in the dream vs the
   teacher (envs/evaluate/seeker.py). On a Crafter checkpoint: Crafter's achievements and deaths.

JSON (`--json`), stable top-level names:
  checkpoint               path of the checkpoint evaluated
  model                    {preset, policy, rope, steps, guidance, switch_guidance, text_encoder}
  eval_seeds               [int] teacher seeds used (fidelity/revisit/adherence: the first `seeds`)
  proxy_seeds              true when those are the proxy seeds (`--proxy`, 70_000 + i: for choosing
                           settings), false for the held-out eval seeds
  window_frames            memory.window_frames of the checkpoint (revisit away times are multiples)
  psnr_by_horizon          {"1": dB, "4": dB, ...}        (null when skipped)
  ssim_by_horizon          {"1": ssim, ...}
  fidelity_detail          {psnr_curve, ssim_curve (per frame 1..H), worlds_per_horizon, policy,
                            player_visible_by_horizon (share of worlds still showing the player),
                            player_visible_tokenizer (the same share for the tokenizer's round trip),
                            frozen_start_frame_psnr_by_horizon (baseline: the start frame, never moving),
                            tokenizer_psnr_heldout (ceiling: the true frames through the tokenizer),
                            tokenizer_psnr_snapped_heldout (the same through the codebook, the ceiling
                            of a model with sampler.snap; None without),
                            teacher_forced_psnr, teacher_forced_ssim, teacher_forced_player_visible,
                            teacher_forced_frames (one-step predictions from the true past),
                            copy_previous_psnr (baseline: the previous true frame as the prediction),
                            teacher_forced_psnr_moved, copy_previous_psnr_moved, teacher_forced_moved_share
                            (the same over the frames that differ from the previous one; on Crafter,
                            whose daylight changes every frame, over the frames where the camera moved),
                            teacher_forced_psnr_shown, tokenizer_psnr_shown, copy_moved_psnr_shown,
                            teacher_forced_psnr_edge, tokenizer_psnr_edge, teacher_forced_edge_share
                            (teacher-forced PSNR over the pixels the previous true frame showed / over the
                            rest, the incoming edge, each beside the tokenizer's ceiling over the same
                            pixels; over the shown ones also the previous true frame moved with the
                            camera, an exact copy),
                            teacher_forced_psnr_known, tokenizer_psnr_known (the same over every pixel
                            but the edge: the part of the frame a model can know),
                            tokenizer_psnr_teacher_forced (the ceiling over the teacher-forced frames:
                            the figure teacher_forced_psnr is held to; tokenizer_psnr_*_heldout spans
                            every frame of the rollout),
                            teacher_forced_psnr_known_exact (the whole frame with the known pixels at
                            the ceiling and the edge as the model drew it: what the known pixels alone
                            can still add),
                            teacher_forced_psnr_by_weather, tokenizer_psnr_by_weather (whole-frame
                            teacher-forced PSNR and its ceiling per weather of the worlds; rain and snow
                            fall in screen space over the moving world; teacher only),
                            teacher_forced_camera_agrees, _agrees_walked, _agrees_blocked,
                            teacher_forced_camera_judged_share, teacher_forced_blocked_share,
                            teacher_forced_camera_blocked_frames (whether
                            the model's teacher-forced frame is the previous true frame moved as the
                            teacher's camera moved, over the frames whose true frame decides it; walked
                            and blocked: a move that moved the view / one an obstacle stopped; teacher,
                            tile motion only),
                            seen_psnr_by_horizon, seen_share_by_horizon, seen_psnr_tokenizer_by_horizon
                            (PSNR over the pixels whose world position the start frame showed),
                            invented_psnr_by_horizon, invented_psnr_teacher_by_horizon,
                            invented_share_by_horizon, invented_lag (the model's frame vs its own
                            frame invented_lag frames earlier, over their shared world outside the start view),
                            tile_valid_by_horizon, tile_valid_teacher, tile_valid_tokenizer, tile_threshold
                            (share of tile cells matching a real tile; envs/evaluate/content.py),
                            tile_valid_snapped_by_horizon (the same for the true frames through the
                            codebook: what a snapping model can reach on those frames; None without snap),
                            tile_valid_by_weather, tile_valid_snapped_by_weather ({weather: {h: share}}:
                            both by the weather of the worlds; teacher only, the second with snap),
                            object_share_by_horizon, object_share_teacher_by_horizon (share of tile
                            cells drawn as a real object tile, not ground: the model's, the truth's),
                            teacher_forced_object_share, teacher_forced_object_share_true (the same for
                            the teacher-forced frames and their true frames)}
  revisit_psnr             {policy: {"16": dB, ...}} keyed by away frames A
  revisit_detail           {away_frames, lead_in, return_frames, consistency_psnr, teacher_consistency_psnr,
                            departure_psnr ({policy: {away: dB}} the model's frame at the place left vs
                            the truth there: what a perfect memory of the model's own world scores on
                            return), clean_share, trajectories}
  prompt_adherence         share in [0, 1]: (a) with train-wording captions (the main number)
  prompt_adherence_detail  {start_train, start_heldout, start_teacher, per_biome, per_biome_teacher (the
                            teacher's own frames of each biome), start_generated,
                            per_biome_generated (no start frame: the world drawn from the train caption
                            alone, frames 0 .. adherence_frames), switch_within, switch_at,
                            switch_within_heldout, switch_at_heldout, switch_within_teacher, switch_at_teacher,
                            switch_frames, switch_curve, switch_curve_heldout, switch_curve_teacher
                            (share by frame 1 .. switch_curve_frames after the switch), switch_per_biome,
                            switch_per_biome_teacher (within switch_frames, by the new biome; the
                            teacher's own cross-fade), switch_recache, classifier_accuracy,
                            classifier_key}
  stable                   bool: stability.nan_free and range_ok and flat_ok and player_ok
  stability                {frames, nan_free, first_nan_frame, range_ok, out_of_range_frames, frame_mean_range,
                            frame_std_range, teacher_mean_range, teacher_std_range, allowed_mean_range,
                            allowed_std_range, latency_ms_p50, latency_ratio_last_first,
                            latency_ratio_last_first_p50, cpu_ratio_last_first_p50, ratio_window_frames, flat_ok,
                            player_visible_share, player_visible_share_first_last, player_psnr_p50,
                            player_threshold, player_present_p1, player_absent_p99, player_ok,
                            tile_valid_share, tile_valid_share_first_last}
  ablations                {memory_updates_off: {revisit_psnr, delta_vs_updates_on}, rope: {checkpoint, rope,
                            psnr_by_horizon, ssim_by_horizon, psnr_curve, player_visible_by_horizon,
                            revisit_psnr, stability} or {skipped}}
  heads                    {worlds, frames, slip_prob, match_frames, live_frames, teacher_forced, free_running:
                            {reward: {precision, recall, model_events, teacher_events, reward_mass,
                            teacher_reward, unearned_share}, done: {precision, recall, model_events,
                            teacher_events}}; tile-step teacher worlds: free_running.reward_shown_share /
                            done_shown_share (the dream's events where its own frame showed a gem / hazard
                            on the tile walked onto), teacher_shown (the same on the teacher's frames) and
                            seeker {worlds, steps, teacher, dream: {steps, rewards, reward_per_1000, gem_frames,
                            paid_on_gem_share, gem_stepons_paid}, share (dream / teacher gems per step)}: a
                            scripted gem seeker in both (envs/evaluate/seeker.py; not with seeker_steps 0)}
  skipped                  [section] not run (their values are null)
  game, skipped_reason     (Crafter checkpoints only) "crafter", and why sections without ground truth
                           there are skipped; fidelity_detail then also has player_visible_true,
                           status_bar_kept_by_horizon, status_bar_kept_tokenizer, status_bar_psnr_by_horizon,
                           status_bar_kept_frozen_by_horizon / status_bar_psnr_frozen_by_horizon (the start
                           frame's bar held still: the baseline a bar that never changes scores),
                           status_bar_drawn_by_horizon / _tokenizer / _true (every bar tile drawn as a real
                           one its slot shows, whatever the counts; stability.status_bar_drawn_share and
                           _first_last over the long run); the
                           teacher-forced shown / edge split keys as the teacher's, over the world view (the
                           status bar and both player tiles left out); it lacks the teacher's invented /
                           tile / object keys (envs/evaluate/crafter.py)
  settings                 the EvalConfig used
  section_seconds          {section: s}
  seconds                  wall time of the whole evaluation

The package, one module per measure, this module the one entry point (`run_eval`):

  config.py     seeds, the game played, EvalConfig
  crafter.py    the sections for a Crafter checkpoint (game.env = "crafter", issue 18)
  metrics.py    PSNR and SSIM
  rollouts.py   the checkpoint, the teacher's true frames, the model's free and teacher-forced runs
  reference.py  the teacher's own ranges and the player-sprite check
  content.py    seen content kept, invented content persisting, tile validity
  fidelity.py   1. fidelity by horizon        revisit.py    2. revisit memory
  adherence.py  3. prompt adherence           stability.py  4. stability              heads.py      6. reward and done heads
  report.py     report.md, its plots and strips, the JSON file
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .adherence import eval_adherence
from .config import (EVAL_SEED_BASE, MEMORY_POLICIES, PSNR_CAP, RANGE_SEED_BASE, SECTIONS, TRAINING_RECORD_SEEDS,
                     EvalConfig, Game, as_game, eval_seeds, training_env_seeds)
from .fidelity import eval_fidelity
from .heads import eval_heads
from .metrics import psnr, ssim
from .reference import player_psnr, style_atlas, teacher_reference
from .report import save_json, write_report
from .revisit import Revisit, eval_revisit, revisit_detail, revisit_plan, revisit_section, revisit_trajectory
from .rollouts import Checkpoint, Episode, load_checkpoint, model_rollout, teacher_forced, teacher_run
from .stability import eval_stability

__all__ = ["EVAL_SEED_BASE", "MEMORY_POLICIES", "PSNR_CAP", "RANGE_SEED_BASE", "SECTIONS", "TRAINING_RECORD_SEEDS",
           "Checkpoint", "Episode", "EvalConfig", "Game", "Revisit", "as_game", "eval_adherence", "eval_fidelity",
           "eval_heads", "eval_revisit", "eval_seeds", "eval_stability", "load_checkpoint", "model_rollout", "player_psnr",
           "psnr", "revisit_detail", "revisit_plan", "revisit_section", "revisit_trajectory", "run_eval",
           "save_json", "ssim", "style_atlas", "teacher_forced", "teacher_reference", "teacher_run",
           "training_env_seeds", "write_report"]


def run_eval(checkpoint: str | Path, ev: EvalConfig | None = None,
             compare_checkpoint: str | Path | None = None) -> tuple[dict, dict]:
    """Evaluate a checkpoint -> (JSON-able result, artifacts for the report)."""
    from world.text import build_text_encoder

    from envs.biome_classifier import config_for, load_or_train

    ev = ev or EvalConfig()
    ev.validate()
    t_start = time.perf_counter()
    ck = load_checkpoint(checkpoint, ev.text_encoder)
    cmp_ck = None if compare_checkpoint is None else load_checkpoint(compare_checkpoint, ev.text_encoder)
    overrides = {k: v for k, v in (("guidance", ev.guidance), ("switch_guidance", ev.switch_guidance)) if v is not None}
    for c in (ck, cmp_ck):
        if c is not None and overrides:
            c.cfg = c.cfg.replace(sampler=overrides)
    cfg = ck.cfg
    game = Game(cfg.tokenizer.image_size, cfg.game.motion)
    text = build_text_encoder(ck.text_encoder)
    steps = ev.steps or cfg.sampler.steps
    seeds = eval_seeds(ev.seeds, ev.proxy)
    W = cfg.memory.window_frames
    result: dict[str, Any] = {
        "checkpoint": str(ck.path),
        "model": {"preset": cfg.name, "policy": cfg.memory.policy, "rope": cfg.memory.rope, "steps": steps,
                  "guidance": cfg.sampler.guidance, "switch_guidance": cfg.sampler.switch_guidance,
                  "text_encoder": ck.text_encoder},
        "eval_seeds": seeds, "proxy_seeds": ev.proxy, "window_frames": W,
        "psnr_by_horizon": None, "ssim_by_horizon": None, "fidelity_detail": None,
        "revisit_psnr": None, "revisit_detail": None,
        "prompt_adherence": None, "prompt_adherence_detail": None,
        "stable": None, "stability": None, "ablations": None, "heads": None,
        "skipped": [s for s in SECTIONS if s in ev.skip],
        "settings": asdict(ev), "section_seconds": {},
    }
    art: dict[str, Any] = {}
    timer = {"t": time.perf_counter()}

    def lap(name: str) -> None:
        now = time.perf_counter()
        result["section_seconds"][name] = round(now - timer["t"], 2)
        timer["t"] = now

    run = lambda s: s not in ev.skip  # noqa: E731
    model = ck.model()
    if cfg.game.env == "crafter":
        return _run_crafter(model, ev, text, seeds, steps, result, art, run, lap, t_start)
    ref = teacher_reference(game) if run("fidelity") or run("stability") else None
    if run("fidelity"):
        out, a = eval_fidelity(model, ev, text, seeds, steps, game, ref)
        result.update(out)
        art.update(a)
        lap("fidelity")
    plan = None
    if run("revisit") or run("ablations"):
        plan = revisit_plan(ev, W, seeds, game)
    if run("revisit"):
        scores, details, frames = revisit_section(ck, ev, text, plan, steps, MEMORY_POLICIES)
        result["revisit_psnr"] = scores
        result["revisit_detail"] = revisit_detail(ev, plan, details)
        art["revisit"] = (plan, frames)
        lap("revisit")
    if run("adherence"):
        clf = load_or_train(config_for(game.resolution, ev.quick), ev.cache_dir, ev.progress)
        detail = eval_adherence(model, ev, text, clf, seeds, steps, game)
        result["prompt_adherence"], result["prompt_adherence_detail"] = detail["start_train"], detail
        lap("adherence")
    if run("stability"):
        result["stability"] = eval_stability(model, ev, text, seeds[0], steps, game, ref)
        result["stable"] = result["stability"]["ok"]
        lap("stability")
    if run("ablations"):
        result["ablations"] = _ablations(ck, cmp_ck, ev, text, plan, steps, seeds, result)
        lap("ablations")
    if run("heads"):
        result["heads"] = eval_heads(model, ev, text, eval_seeds(ev.heads_worlds, ev.proxy), steps, game)
        lap("heads")
    result["seconds"] = round(time.perf_counter() - t_start, 2)
    return result, art


def _run_crafter(model, ev: EvalConfig, text, seeds, steps, result: dict, art: dict, run, lap, t_start):
    """A Crafter checkpoint: the sections with ground truth in the real game (envs/evaluate/crafter.py)."""
    from .crafter import CRAFTER, eval_crafter_fidelity, eval_crafter_stability

    result["game"] = "crafter"
    result["skipped_reason"] = {s: "no ground truth in Crafter (no prompt, biome, teacher atlas or revisit plan)"
                                for s in ("revisit", "adherence", "ablations")}
    result["skipped"] = sorted(set(result["skipped"]) | set(result["skipped_reason"]), key=SECTIONS.index)
    if run("fidelity"):
        out, a = eval_crafter_fidelity(model, ev, text, seeds, steps)
        result.update(out)
        art.update(a)
        lap("fidelity")
    if run("stability"):
        result["stability"] = eval_crafter_stability(model, ev, text, seeds[0], steps)
        result["stable"] = result["stability"]["ok"]
        lap("stability")
    if run("heads"):  # Crafter's own rewards and deaths under the same actions (events: achievements)
        result["heads"] = eval_heads(model, ev, text, eval_seeds(ev.heads_worlds, ev.proxy), steps, CRAFTER)
        lap("heads")
    result["seconds"] = round(time.perf_counter() - t_start, 2)
    return result, art


def _ablations(ck: Checkpoint, cmp_ck: Checkpoint | None, ev: EvalConfig, text, plan, steps,
               seeds: list[int], result: dict) -> dict:
    out: dict[str, Any] = {}
    if ck.cfg.memory.policy == "evolving":
        off = revisit_section(ck, ev, text, plan, steps, ["evolving"], updates=False)[0]["evolving"]  # {away: dB}
        on = (result["revisit_psnr"] or {}).get("evolving")
        if on is None:
            on = revisit_section(ck, ev, text, plan, steps, ["evolving"])[0]["evolving"]
        out["memory_updates_off"] = {
            "revisit_psnr": off, "revisit_psnr_updates_on": on,
            "delta_vs_updates_on": {a: None if off[a] is None or on[a] is None else off[a] - on[a] for a in off}}
    else:
        out["memory_updates_off"] = {"skipped": f"checkpoint policy is {ck.cfg.memory.policy!r}, not evolving"}
    if cmp_ck is None:
        out["rope"] = {"skipped": "no --compare-checkpoint given (a checkpoint trained with "
                                  "memory.rope='absolute' gives the RoPE ablation)"}
        return out
    cmp_text = text
    if cmp_ck.text_encoder != ck.text_encoder:
        from world.text import build_text_encoder

        cmp_text = build_text_encoder(cmp_ck.text_encoder)
    cmp_model = cmp_ck.model()
    Rc, steps_c = Game(cmp_ck.cfg.tokenizer.image_size, cmp_ck.cfg.game.motion), ev.steps or cmp_ck.cfg.sampler.steps
    cmp_ref = teacher_reference(Rc)
    fid, _ = eval_fidelity(cmp_model, ev, cmp_text, seeds, steps_c, Rc, cmp_ref, tag=" (compare)")
    cmp_plan = plan
    if cmp_ck.cfg.memory.window_frames != ck.cfg.memory.window_frames or Rc != Game(ck.cfg.tokenizer.image_size,
                                                                                     ck.cfg.game.motion):
        cmp_plan = revisit_plan(ev, cmp_ck.cfg.memory.window_frames, seeds, Rc)
    pol = cmp_ck.cfg.memory.policy
    rev = revisit_section(cmp_ck, ev, cmp_text, cmp_plan, steps_c, [pol])[0]
    out["rope"] = {"checkpoint": str(cmp_ck.path), "rope": cmp_ck.cfg.memory.rope,
                   "this_rope": ck.cfg.memory.rope, "psnr_by_horizon": fid["psnr_by_horizon"],
                   "ssim_by_horizon": fid["ssim_by_horizon"], "psnr_curve": fid["fidelity_detail"]["psnr_curve"],
                   "player_visible_by_horizon": fid["fidelity_detail"]["player_visible_by_horizon"],
                   "revisit_psnr": rev}
    if "stability" not in ev.skip:  # the long rollout, where unbounded ids must extrapolate
        st = eval_stability(cmp_model, ev, cmp_text, seeds[0], steps_c, Rc, cmp_ref)
        out["rope"]["stability"] = {k: st[k] for k in ("frames", "ok", "nan_free", "range_ok", "flat_ok",
                                                       "player_visible_share", "player_visible_share_first_last")}
    return out
