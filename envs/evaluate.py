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

JSON (`--json`), stable top-level names:
  checkpoint               path of the checkpoint evaluated
  model                    {preset, policy, rope, steps, text_encoder}
  eval_seeds               [int] teacher seeds used (fidelity/revisit/adherence: the first `seeds`)
  window_frames            memory.window_frames of the checkpoint (revisit away times are multiples)
  psnr_by_horizon          {"1": dB, "4": dB, ...}        (null when skipped)
  ssim_by_horizon          {"1": ssim, ...}
  fidelity_detail          {psnr_curve, ssim_curve (per frame 1..H), worlds_per_horizon, policy,
                            player_visible_by_horizon (share of worlds still showing the player),
                            player_visible_tokenizer (the same share for the tokenizer's round trip),
                            frozen_start_frame_psnr_by_horizon (baseline: the start frame, never moving),
                            tokenizer_psnr_heldout (ceiling: the true frames through the tokenizer),
                            teacher_forced_psnr, teacher_forced_ssim, teacher_forced_player_visible,
                            teacher_forced_frames (one-step predictions from the true past),
                            copy_previous_psnr (baseline: the previous true frame as the prediction),
                            teacher_forced_psnr_moved, copy_previous_psnr_moved, teacher_forced_moved_share
                            (the same over the frames that differ from the previous one),
                            seen_psnr_by_horizon, seen_share_by_horizon, seen_psnr_tokenizer_by_horizon
                            (PSNR over the pixels whose world position the start frame showed),
                            invented_psnr_by_horizon, invented_psnr_teacher_by_horizon,
                            invented_share_by_horizon, invented_lag (the model's frame vs its own
                            frame invented_lag frames earlier, over their shared world outside the start view),
                            tile_valid_by_horizon, tile_valid_teacher, tile_valid_tokenizer, tile_threshold
                            (share of tile cells matching a real tile; envs/eval_content.py)}
  revisit_psnr             {policy: {"16": dB, ...}} keyed by away frames A
  revisit_detail           {away_frames, lead_in, return_frames, consistency_psnr, teacher_consistency_psnr,
                            clean_share, trajectories}
  prompt_adherence         share in [0, 1]: (a) with train-wording captions (the main number)
  prompt_adherence_detail  {start_train, start_heldout, start_teacher, per_biome, switch_within, switch_at,
                            switch_within_heldout, switch_at_heldout, switch_within_teacher, switch_at_teacher,
                            switch_frames, switch_curve, switch_curve_heldout, switch_curve_teacher
                            (share by frame 1 .. switch_curve_frames after the switch), switch_per_biome
                            (within switch_frames, by the new biome), switch_recache, classifier_accuracy,
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
  skipped                  [section] not run (their values are null)
  settings                 the EvalConfig used
  section_seconds          {section: s}
  seconds                  wall time of the whole evaluation
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

EVAL_SEED_BASE = 90_000
"""Eval seed i is 90_000 + i (teacher reset seed and model noise seed)."""
TRAINING_RECORD_SEEDS = (1, 2)
"""`--seed` of the recordings `make train` learns from (episode env seeds derive from them)."""
RANGE_SEED_BASE = 80_000
"""Teacher seeds of the frames that measure the teacher's own mean/std range."""
SECTIONS = ("fidelity", "revisit", "adherence", "stability", "ablations")
MEMORY_POLICIES = ("window", "sink", "compress", "evolving")
PSNR_CAP = 100.0
NOOP = 0  # teacher actions: NOOP UP DOWN LEFT RIGHT USE
TEACHER_ACTIONS = 6
MOVE = {"UP": 1, "DOWN": 2, "LEFT": 3, "RIGHT": 4}
INVERSE = {"UP": "DOWN", "DOWN": "UP", "LEFT": "RIGHT", "RIGHT": "LEFT"}
PERPENDICULAR = {"UP": ("LEFT", "RIGHT"), "DOWN": ("RIGHT", "LEFT"),
                 "LEFT": ("DOWN", "UP"), "RIGHT": ("UP", "DOWN")}


@dataclass(frozen=True)
class Game:
    """How the teacher draws the checkpoint's world: frame side and motion mode (`game.motion`)."""

    resolution: int
    motion: str = "smooth"


def as_game(game: "Game | int") -> Game:
    """A Game; a bare int is a resolution in the smooth mode (the checkpoints before issue 14)."""
    return game if isinstance(game, Game) else Game(int(game))


def eval_seeds(n: int) -> list[int]:
    return [EVAL_SEED_BASE + i for i in range(n)]


def training_env_seeds(record_seed: int, episodes: int) -> list[int]:
    """The teacher seeds `echo-infinity record --seed S --episodes E` resets with (envs/record.py)."""
    return [int(c.generate_state(1)[0]) for c in np.random.SeedSequence(record_seed).spawn(episodes)]


@dataclass
class EvalConfig:
    """Settings of one evaluation (saved in the JSON under `settings`)."""

    seeds: int = 8
    """Eval seeds (worlds per batch) for fidelity, revisit and, per biome, adherence."""
    horizons: tuple[int, ...] = (1, 4, 16, 64, 256)
    """Frames after the start frame at which PSNR/SSIM are reported."""
    away_multiples: tuple[int, ...] = (2, 4, 8)
    """Revisit away times A in multiples of memory.window_frames."""
    lead_in: int = 32
    """Revisit: frames walked before the excursion (64 px: the place left is not the start view)."""
    return_frames: int = 4
    """Revisit: NOOP frames at the place left after coming back; all of them are scored."""
    adherence_frames: int = 32
    """Adherence (a): generated frames per world."""
    switch_after: int = 8
    """Adherence (b): frames before the prompt switch."""
    switch_frames: int = 16
    """Adherence (b): frames scored after the switch (switch_within, switch_at)."""
    switch_curve_frames: int = 32
    """Adherence (b): frames after the switch in the adherence-by-frame curve (>= switch_frames)."""
    teacher_forced_frames: int = 32
    """Fidelity: frames per world predicted one step ahead from the true past."""
    invented_lag: int = 8
    """Fidelity: invented content is compared with the model's own frame this many frames earlier."""
    stability_frames: int = 10_000
    """Stability: frames of the free rollout."""
    flat_ratio_max: float = 1.25
    """Stability: largest allowed CPU-time ratio last/first frames."""
    player_visible_min: float = 0.9
    """Stability: least share of frames that must still show the player (the teacher's: all)."""
    steps: int | None = None
    """Denoising steps per frame (None: the checkpoint's sampler.steps)."""
    skip: tuple[str, ...] = ()
    """Sections not to run."""
    text_encoder: str = "auto"
    """'auto' (trainer.json beside the weights, else minilm), 'minilm' or 'hash'."""
    cache_dir: str | None = "runs/eval_cache"
    """Where the biome classifier's weights are cached (None: train, do not cache)."""
    quick: bool = False
    """Tiny classifier data (see `quick_config`)."""
    progress: bool = True

    @classmethod
    def quick_config(cls, **overrides) -> "EvalConfig":
        """Smoke-test settings: 2 seeds, horizons up to 16, 200 stability frames, small classifier."""
        base = dict(seeds=2, horizons=(1, 4, 16), away_multiples=(2, 4), lead_in=16, adherence_frames=8,
                    stability_frames=200, quick=True)
        return cls(**{**base, **overrides})

    def validate(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(what)

        need(self.seeds >= 1, f"--seeds must be >= 1, got {self.seeds}")
        need(len(self.horizons) > 0 and all(h >= 1 for h in self.horizons), f"horizons must be >= 1: {self.horizons}")
        need(len(self.away_multiples) > 0 and all(a >= 1 for a in self.away_multiples),
             f"away multiples must be >= 1: {self.away_multiples}")
        need(self.return_frames >= 1 and self.lead_in >= 0, "return_frames must be >= 1 and lead_in >= 0")
        need(self.switch_curve_frames >= self.switch_frames, "switch_curve_frames must be >= switch_frames")
        need(self.adherence_frames >= 1 and self.switch_frames >= 1 and self.switch_after >= 1,
             "adherence frame counts must be >= 1")
        need(self.stability_frames >= 8, f"--stability-frames must be >= 8, got {self.stability_frames}")
        need(self.steps is None or 1 <= self.steps <= 64, f"--steps must be in [1, 64], got {self.steps}")
        unknown = sorted(set(self.skip) - set(SECTIONS))
        need(not unknown, f"unknown section(s) to skip {unknown}; choose from {', '.join(SECTIONS)}")
        need(self.text_encoder in ("auto", "minilm", "hash"),
             f"text encoder must be auto, minilm or hash, got {self.text_encoder!r}")


# --------------------------------------------------------------------------------------------
# Frame metrics


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] x 2 (b broadcasts) -> PSNR in dB [...], capped at PSNR_CAP for identical frames."""
    return _per_frame(_psnr, a, b)


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] x 2 (b broadcasts) -> SSIM [...] (Gaussian 11/1.5, valid borders, RGB mean)."""
    return _per_frame(_ssim, a, b)


def _per_frame(fn, a: np.ndarray, b: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Apply fn([N, H, W, 3], [N, H, W, 3]) -> [N] in chunks (bounded memory), keep the leading shape."""
    b = np.broadcast_to(b, a.shape)
    lead, frame = a.shape[:-3], a.shape[-3:]
    a2, b2 = a.reshape(-1, *frame), b.reshape(-1, *frame)
    out = [fn(a2[i:i + chunk], b2[i:i + chunk]) for i in range(0, len(a2), chunk)]
    return (np.concatenate(out) if out else np.zeros(0)).reshape(lead)


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))  # [N]
    with np.errstate(divide="ignore"):
        return np.minimum(10.0 * np.log10(255.0**2 / mse), PSNR_CAP)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()  # [size]


def _ssim(a: np.ndarray, b: np.ndarray, size: int = 11, sigma: float = 1.5) -> np.ndarray:
    H, W = a.shape[1:3]
    if min(H, W) < size:
        raise ValueError(f"SSIM needs frames of at least {size}x{size}, got {H}x{W}")
    x = torch.tensor(a, dtype=torch.float64).permute(0, 3, 1, 2)  # [N, 3, H, W] (a copy: b may be read-only)
    y = torch.tensor(b, dtype=torch.float64).permute(0, 3, 1, 2)
    g = _gaussian_window(size, sigma)
    gh, gv = g.view(1, 1, 1, size).repeat(3, 1, 1, 1), g.view(1, 1, size, 1).repeat(3, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:  # separable, per channel, 'valid': [N, 3, H-10, W-10]
        return F.conv2d(F.conv2d(t, gh, groups=3), gv, groups=3)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).numpy()  # [N]


def _mean(values) -> float | None:
    """Mean of finite values as a float, None if there are none (JSON has no NaN)."""
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


# --------------------------------------------------------------------------------------------
# The checkpoint: one model per memory policy, all on the same weights


@dataclass
class Checkpoint:
    path: Path
    cfg: Any  # world.config.ModelConfig, as saved
    text_encoder: str

    def model(self, policy: str | None = None, **memory) -> Any:
        """The checkpoint's weights under another memory policy and/or memory settings
        (e.g. policy="sink", updates=False). Memory weights the policy lacks are dropped
        (`WorldModel.load(policy=)`); weights it needs but the checkpoint lacks are a ValueError.
        """
        from world.model import WorldModel

        cfg = self.cfg.replace(memory=memory) if memory else self.cfg
        return WorldModel.load(self.path, config=cfg, policy=policy).eval()


def load_checkpoint(path: str | Path, text_encoder: str = "auto") -> Checkpoint:
    """Read config.json (+ check model.safetensors loads); FileNotFoundError for a missing file, a
    ValueError (world.CheckpointError for a bad file) for anything else."""
    from world.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_config

    d = Path(path)
    if not d.is_dir():
        raise FileNotFoundError(f"checkpoint {d} is not a directory (expected {WEIGHTS_FILE} + {CONFIG_FILE})")
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (d / name).is_file():
            raise FileNotFoundError(f"checkpoint {d} has no {name}")
    cfg = read_config(d)
    if cfg.tokenizer.image_size not in (64, 128, 256):
        raise ValueError(f"checkpoint frames are {cfg.tokenizer.image_size}px; the teacher renders 64, 128 or 256")
    if cfg.dit.num_actions < TEACHER_ACTIONS or cfg.memory.chunk_frames != 1:
        raise ValueError("eval needs a model with >= 6 actions (the teacher's) and chunk_frames = 1")
    if text_encoder == "auto":
        text_encoder = "minilm"
        meta = d / "trainer.json"
        if meta.is_file():
            try:
                text_encoder = json.loads(meta.read_text())["train_config"]["text_encoder"]
            except (KeyError, TypeError, ValueError):  # ValueError: not JSON, or not UTF-8
                pass
    ck = Checkpoint(d, cfg, text_encoder)
    ck.model()  # weights must load and match the config: fail here, not mid-evaluation
    return ck


# --------------------------------------------------------------------------------------------
# Teacher and model rollouts


@dataclass
class Episode:
    """One teacher run: frames[0] is the reset frame, frames[t + 1] follows actions[t]."""

    seed: int
    frames: np.ndarray  # uint8 [T + 1, R, R, 3]
    actions: np.ndarray  # int64 [T]
    caption: str
    style: Any  # envs.style.Style at reset
    alive: int  # frames 0..alive are real (the episode did not end before them)
    positions: list[tuple[int, int]] = field(default_factory=list)


def teacher_run(seed: int, T: int, game: Game | int, actions: Sequence[int] | None = None,
                style=None, switch: tuple[int, Any] | None = None) -> Episode:
    """Play the teacher for T frames: the given actions, else its explore policy (no hazard slips).

    switch = (k, style): set_style(style) before the step out of frame k.
    Frames after an episode end repeat the last frame (and `alive` says where it ended).
    """
    from envs.policies import make_policy
    from envs.teacher import TeacherEnv

    game = as_game(game)
    env = TeacherEnv(resolution=game.resolution, motion=game.motion)
    obs, info = env.reset(seed=seed, options=None if style is None else {"style": style})
    policy = None
    if actions is None:
        policy = make_policy("explore", env, np.random.default_rng(seed), slip_prob=0.0)
        policy.reset(info)
    frames = np.empty((T + 1, *obs.shape), np.uint8)
    frames[0] = obs
    acts = np.zeros(T, np.int64)
    positions = [info["position"]]
    caption, start_style, alive = info["caption"], env.style, T
    for t in range(T):
        if switch is not None and switch[0] == t:
            env.set_style(switch[1])
        if alive < T:  # ended: the rest repeats the last frame
            frames[t + 1] = frames[t]
            positions.append(positions[-1])
            continue
        a = int(actions[t]) if policy is None else policy.act(info)
        obs, _, terminated, truncated, info = env.step(a)
        acts[t], frames[t + 1] = a, obs
        positions.append(info["position"])
        if terminated or truncated:
            alive = t + 1
    env.close()
    return Episode(seed, frames, acts, caption, start_style, alive, positions)


@torch.no_grad()
def model_rollout(model, first: np.ndarray, prompts: list, actions: np.ndarray, seeds: Sequence[int],
                  steps: int | None, switch: tuple[int, list] | None = None, desc: str = "",
                  progress: bool = True, recache: bool = True) -> np.ndarray:
    """B worlds in one batch: first uint8 [B, R, R, 3], actions int64 [B, T] -> frames uint8 [B, T + 1, R, R, 3].

    frame 0 is `first`; frame t + 1 is generated from action t. switch = (k, prompts):
    set_prompt (re-caching the window unless recache is False) before generating frame k + 1.
    """
    from tqdm import tqdm

    B, T = actions.shape
    state = model.init_state(B, prompts, list(seeds), first_frame=torch.from_numpy(first))
    out = np.empty((B, T + 1, *first.shape[1:]), np.uint8)
    out[:, 0] = first
    act = torch.from_numpy(actions)
    for t in tqdm(range(T), desc=desc, disable=not progress, leave=False):
        if switch is not None and switch[0] == t:
            model.set_prompt(state, switch[1], recache=recache)
        out[:, t + 1] = model.step(state, act[:, t].contiguous(), steps).frame.numpy()
    return out


@torch.no_grad()
def teacher_forced(model, true: np.ndarray, prompts: list, actions: np.ndarray, seeds: Sequence[int],
                   steps: int | None) -> np.ndarray:
    """One-step predictions with the true past as context: true uint8 [B, T + 1, R, R, 3],
    actions [B, T] -> frames uint8 [B, T, R, R, 3]; frame t is drawn from true frames 0..t
    (committed to the world in place of the model's own), so errors cannot build up."""
    B, T = actions.shape
    state = model.init_state(B, prompts, list(seeds), first_frame=torch.from_numpy(true[:, 0]))
    out = np.empty((B, T, *true.shape[2:]), np.uint8)
    act = torch.from_numpy(actions)
    for t in range(T):
        a = model.check_action(act[:, t].contiguous(), B)
        ctx = model.prepare(state)
        x0 = model.sample(state, ctx, a, steps)
        out[:, t] = model.tokenizer.decode(x0[:, 0]).cpu().numpy()
        model.commit(state, ctx, model.tokenizer.encode(torch.from_numpy(true[:, t + 1]))[:, None], a)
    return out


# --------------------------------------------------------------------------------------------
# 1. Fidelity by horizon


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
        recon = torch.cat([tok.decode(tok.encode(c)) for c in flat.split(256)]).cpu().numpy()
    ceiling = np.where(alive, psnr(recon.reshape(true[:, 1:].shape), true[:, 1:]), np.nan)
    out = {"psnr_by_horizon": {str(h): _mean(p[:, h - 1]) for h in ev.horizons},
           "ssim_by_horizon": {str(h): _mean(s[:, h - 1]) for h in ev.horizons},
           "fidelity_detail": {"policy": "explore (teacher, no hazard slips)",
                               "frozen_start_frame_psnr_by_horizon": {str(h): _mean(frozen[:, h - 1])
                                                                      for h in ev.horizons},
                               "tokenizer_psnr_heldout": _mean(ceiling),
                               "worlds_per_horizon": {str(h): int(alive[:, h - 1].sum()) for h in ev.horizons},
                               "psnr_curve": [_mean(p[:, t]) for t in range(T)],
                               "ssim_curve": [_mean(s[:, t]) for t in range(T)]}}
    if ref is not None:  # share of worlds whose frame at horizon h still shows the player
        def seen(frames: np.ndarray) -> np.ndarray:  # [B, T] 1/0, NaN after an episode ended
            shown = np.stack([player_psnr(f, e.style, motion=game.motion)
                              for f, e in zip(frames, eps)]) >= ref["player_threshold"]
            return np.where(alive, shown, np.nan)

        gen_seen, recon_seen = seen(gen[:, 1:]), seen(recon.reshape(true[:, 1:].shape))
        out["fidelity_detail"]["player_visible_by_horizon"] = {str(h): _mean(gen_seen[:, h - 1])
                                                               for h in ev.horizons}
        out["fidelity_detail"]["player_visible_tokenizer"] = _mean(recon_seen)
    out["fidelity_detail"].update(_content(ev, eps, gen, true, recon.reshape(true[:, 1:].shape), alive, game))
    tf_T = min(ev.teacher_forced_frames, T)
    tf = teacher_forced(model, true[:, :tf_T + 1], [text(e.caption) for e in eps],
                        np.stack([e.actions[:tf_T] for e in eps]), seeds, steps)
    tf_alive = alive[:, :tf_T]
    target = true[:, 1:tf_T + 1]
    out["fidelity_detail"].update({
        "teacher_forced_frames": tf_T,
        "teacher_forced_psnr": _mean(np.where(tf_alive, psnr(tf, target), np.nan)),
        "teacher_forced_ssim": _mean(np.where(tf_alive, ssim(tf, target), np.nan)),
        # the baseline a model must beat to have learned motion: copy the previous true frame
        "copy_previous_psnr": _mean(np.where(tf_alive, psnr(true[:, :tf_T], target), np.nan))})
    # Frames that changed (a move, not a NOOP or a wall): an unchanged frame scores the 100 dB cap
    # when copied, which swamps a mean in dB, so motion is judged on these alone.
    moved = tf_alive & (psnr(true[:, :tf_T], target) < PSNR_CAP)
    out["fidelity_detail"].update({
        "teacher_forced_moved_share": _mean(np.where(tf_alive, moved, np.nan)),
        "teacher_forced_psnr_moved": _mean(np.where(moved, psnr(tf, target), np.nan)),
        "copy_previous_psnr_moved": _mean(np.where(moved, psnr(true[:, :tf_T], target), np.nan))})
    if ref is not None:
        shown = np.stack([player_psnr(f, e.style, motion=game.motion) for f, e in zip(tf, eps)])
        out["fidelity_detail"]["teacher_forced_player_visible"] = _mean(
            np.where(tf_alive, shown >= ref["player_threshold"], np.nan))
    cols = [0, *ev.horizons]
    art = {"strip_true": true[:2, cols], "strip_gen": gen[:2, cols], "strip_cols": cols,
           "strip_tf": tf[:2, :min(tf_T, 8)]}
    return out, art


def _content(ev: EvalConfig, eps: list[Episode], gen: np.ndarray, true: np.ndarray, recon: np.ndarray,
             alive: np.ndarray, game: Game) -> dict:
    """Seen content kept, invented content persists, tile validity (envs/eval_content.py), by horizon."""
    from .eval_content import seen_and_invented, tile_threshold, tile_validity

    R, motion, lag = game.resolution, game.motion, ev.invented_lag
    recon_full = np.concatenate([true[:, :1], recon], 1)
    per = [seen_and_invented(g, t, e.positions, R, motion, lag) for g, t, e in zip(gen, true, eps)]
    tok = [seen_and_invented(r, t, e.positions, R, motion, lag)["seen"] for r, t, e in zip(recon_full, true, eps)]
    thr = tile_threshold(R)["threshold_db"]
    valid = {name: np.stack([tile_validity(f[1:], e.positions[1:], e.style, R, motion, thr)
                             for f, e in zip(frames, eps)])
             for name, frames in (("gen", gen), ("true", true), ("tok", recon_full))}

    def by_h(values: np.ndarray) -> dict:  # [B, T] -> {h: mean over live worlds}
        v = np.where(alive, values, np.nan)
        return {str(h): _mean(v[:, h - 1]) for h in ev.horizons}

    stack = lambda key: np.stack([p[key] for p in per])  # noqa: E731
    return {"seen_psnr_by_horizon": by_h(stack("seen")), "seen_share_by_horizon": by_h(stack("seen_share")),
            "seen_psnr_tokenizer_by_horizon": by_h(np.stack(tok)),
            "invented_lag": lag, "invented_psnr_by_horizon": by_h(stack("invented")),
            "invented_psnr_teacher_by_horizon": by_h(stack("invented_teacher")),
            "invented_share_by_horizon": by_h(stack("invented_share")),
            "tile_valid_by_horizon": by_h(valid["gen"]),
            "tile_valid_teacher": _mean(np.where(alive, valid["true"], np.nan)),
            "tile_valid_tokenizer": _mean(np.where(alive, valid["tok"], np.nan)),
            "tile_threshold": tile_threshold(R)}


# --------------------------------------------------------------------------------------------
# 2. Revisit memory


@dataclass
class Revisit:
    """A scripted lead-in + out-and-back trajectory and its teacher frames."""

    episode: Episode
    lead: str
    out: str
    quality: int  # 2 clean (never blocked, back exactly), 1 back exactly, 0 alive, -1 died
    depart: int  # frame index at the place left (before the first out move)


def _script(lead: str, out: str, lead_in: int, away: int, settle: int) -> list[int]:
    half = away // 2
    return [MOVE[lead]] * lead_in + [MOVE[out]] * half + [MOVE[INVERSE[out]]] * (away - half) + [NOOP] * settle


def _quality(ep: Episode, depart: int, away: int) -> int:
    if ep.alive < len(ep.actions):
        return -1
    pos = ep.positions
    back = pos[depart + away] == pos[depart]
    moved = all(pos[i + 1] != pos[i] for i in range(depart, depart + away))
    return 2 if back and moved else int(back)


def revisit_trajectory(seed: int, away: int, ev: EvalConfig, game: Game | int) -> Revisit:
    """The best (lead, out) direction pair for this seed (first found of the best quality)."""
    dirs = list(MOVE)
    k = seed % 4
    best = None
    for out in dirs[k:] + dirs[:k]:
        for lead in PERPENDICULAR[out]:
            acts = _script(lead, out, ev.lead_in, away, ev.return_frames)
            ep = teacher_run(seed, len(acts), game, actions=acts)
            r = Revisit(ep, lead, out, _quality(ep, ev.lead_in, away), ev.lead_in)
            if best is None or r.quality > best.quality:
                best = r
            if best.quality == 2:
                return best
    return best


def eval_revisit(model, ev: EvalConfig, text, trajectories: dict[int, list[Revisit]], steps,
                 tag: str) -> tuple[dict, dict, dict]:
    """-> ({away: dB}, {away: consistency dB}, {away: generated frames [B, T + 1, ...]})."""
    scores, consistency, frames = {}, {}, {}
    for away, trs in trajectories.items():
        true = np.stack([r.episode.frames for r in trs])  # [B, T + 1, R, R, 3]
        acts = np.stack([r.episode.actions for r in trs])
        gen = model_rollout(model, true[:, 0], [text(r.episode.caption) for r in trs], acts,
                            [r.episode.seed for r in trs], steps, desc=f"revisit {tag} A={away}",
                            progress=ev.progress)
        ret = slice(-ev.return_frames, None)
        ok = np.array([r.quality >= 0 for r in trs])  # a run that died has no true frames to return to
        scores[str(away)] = _mean(psnr(gen[ok, ret], true[ok, ret]))
        consistency[str(away)] = _mean(psnr(gen[ok, ret], gen[ok, ev.lead_in][:, None]))
        frames[away] = gen
    return scores, consistency, frames


def revisit_plan(ev: EvalConfig, window: int, seeds: list[int], game: Game) -> dict[int, list[Revisit]]:
    return {m * window: [revisit_trajectory(s, m * window, ev, game) for s in seeds]
            for m in ev.away_multiples}


def revisit_section(ck: Checkpoint, ev: EvalConfig, text, plan, steps, policies: Sequence[str],
                    **memory) -> tuple[dict, dict, dict]:
    """Every policy on the same weights; one whose memory weights the checkpoint lacks scores None."""
    scores, consistency, frames = {}, {}, {}
    for policy in policies:
        try:
            model = ck.model(policy=policy, **memory)
        except ValueError:  # e.g. evolving on a checkpoint trained without evolving memory
            scores[policy] = consistency[policy] = None
            continue
        scores[policy], consistency[policy], frames[policy] = eval_revisit(model, ev, text, plan, steps, policy)
    return scores, consistency, frames


def revisit_detail(ev: EvalConfig, plan: dict[int, list[Revisit]], consistency: dict) -> dict:
    teacher = {}
    for away, trs in plan.items():
        true = np.stack([r.episode.frames for r in trs if r.quality >= 0])
        teacher[str(away)] = _mean(psnr(true[:, -ev.return_frames:], true[:, ev.lead_in][:, None]))
    every = [r for trs in plan.values() for r in trs]
    return {"away_frames": [int(a) for a in plan], "lead_in": ev.lead_in, "return_frames": ev.return_frames,
            "consistency_psnr": consistency, "teacher_consistency_psnr": teacher,
            "clean_share": float(np.mean([r.quality == 2 for r in every])),
            "trajectories": [{"seed": r.episode.seed, "away": int(a), "lead": r.lead, "out": r.out,
                              "quality": ["died", "alive", "returned", "clean"][r.quality + 1]}
                             for a, trs in plan.items() for r in trs]}


# --------------------------------------------------------------------------------------------
# 3. Prompt adherence


def eval_adherence(model, ev: EvalConfig, text, clf, seeds: list[int], steps, game: Game,
                   recache: bool = True) -> dict:
    """recache: the switch re-caches the window under the new prompt (what play does);
    False measures the switch without it (the prompt only reaches frames made afterwards)."""
    from envs.style import BIOMES, caption

    worlds = [(b, s) for b in range(len(BIOMES)) for s in seeds]  # biome-major
    target = np.array([b for b, _ in worlds])
    T, K, S, S_curve = ev.adherence_frames, ev.switch_after, ev.switch_frames, ev.switch_curve_frames

    def share(frames: np.ndarray, biomes: np.ndarray) -> np.ndarray:  # [B, n, ...] -> hit [B, n]
        B, n = frames.shape[:2]
        pred = clf.predict(frames.reshape(B * n, *frames.shape[2:])).reshape(B, n)
        return pred == biomes[:, None]

    # (a) start from a teacher frame of biome X, prompted with X
    eps = [teacher_run(s, T, game, style=_style(b, s)) for b, s in worlds]
    first = np.stack([e.frames[0] for e in eps])
    acts = np.stack([e.actions for e in eps])
    seeds_b = [s for _, s in worlds]
    heldout = [caption(e.style, np.random.default_rng(e.seed), heldout=True) for e in eps]
    hits = {}
    for name, caps in (("train", [e.caption for e in eps]), ("heldout", heldout)):
        gen = model_rollout(model, first, [text(c) for c in caps], acts, seeds_b, steps,
                            desc=f"adherence {name}", progress=ev.progress)
        hits[name] = share(gen[:, 1:], target)
    teacher_hits = share(np.stack([e.frames[1:] for e in eps]), target)

    # (b) switch from biome A to B after K frames; score frames K+1 .. K+S
    new = (target + 1 + np.arange(len(worlds)) % (len(BIOMES) - 1)) % len(BIOMES)  # != target
    new_styles = [e.style.replace(biome=BIOMES[n]) for e, n in zip(eps, new)]
    sw_eps = [teacher_run(s, K + S_curve, game, style=_style(b, s), switch=(K, st))
              for (b, s), st in zip(worlds, new_styles)]
    first = np.stack([e.frames[0] for e in sw_eps])
    acts = np.stack([e.actions for e in sw_eps])
    after = slice(K + 1, K + S_curve + 1)  # hit [:, i] is frame i + 1 after the switch
    rng = np.random.default_rng(0)
    sw = {}
    for name, heldout_words in (("", False), ("_heldout", True)):
        caps = [caption(st, rng, heldout=heldout_words) for st in new_styles]
        gen = model_rollout(model, first, [text(e.caption) for e in sw_eps], acts, seeds_b, steps,
                            switch=(K, [text(c) for c in caps]), desc=f"switch{name}", progress=ev.progress,
                            recache=recache)
        sw[name] = share(gen[:, after], new)
    sw["_teacher"] = share(np.stack([e.frames[after] for e in sw_eps]), new)
    out = {"start_train": float(hits["train"].mean()), "start_heldout": float(hits["heldout"].mean()),
           "start_teacher": float(teacher_hits.mean()),
           "per_biome": {b: float(hits["train"][target == i].mean()) for i, b in enumerate(BIOMES)},
           "start_frames": T, "switch_after": K, "switch_frames": S}
    for name, h in sw.items():
        out[f"switch_within{name}"] = float(h[:, :S].mean())
        out[f"switch_at{name}"] = float(h[:, S - 1].mean())
        out[f"switch_curve{name}"] = [float(v) for v in h.mean(0)]  # frames 1 .. switch_curve_frames after
    out["switch_per_biome"] = {b: float(sw[""][new == i, :S].mean()) if (new == i).any() else None
                               for i, b in enumerate(BIOMES)}  # by the new biome; None: no world switched to it
    out["switch_recache"] = bool(recache)
    out.update(classifier_accuracy=clf.accuracy, classifier_key=clf.cfg.key())
    return out


def _style(biome: int, seed: int):
    """Biome `biome` with a time of day and weather drawn from the seed."""
    from envs.style import BIOMES, TIMES_OF_DAY, WEATHERS, Style

    rng = np.random.default_rng([seed, biome])
    return Style(BIOMES[biome], str(rng.choice(TIMES_OF_DAY)), str(rng.choice(WEATHERS)))


# --------------------------------------------------------------------------------------------
# The player: the teacher always draws its sprite at the same place of the view (the centre,
# or in tile mode the tile right of and below it: `envs.teacher.player_origin`), so a frame
# without it has left the teacher's world (the collapse a mean/std range cannot see).


@functools.lru_cache(maxsize=128)
def _atlas(style, resolution: int):
    from envs.teacher import VIEW
    from envs.tiles import BASE_TILE, Atlas

    return Atlas(style, BASE_TILE * (resolution // VIEW))


def player_psnr(frames: np.ndarray, style, offset: tuple[int, int] = (0, 0), motion: str = "smooth") -> np.ndarray:
    """uint8 [T, R, R, 3] -> [T] PSNR of the player's patch vs the player sprite of `style`
    (best of the 4 facings), over the sprite's own pixels only. `offset` moves the patch."""
    from envs.teacher import player_origin

    R = frames.shape[1]
    atlas = _atlas(style, R)
    ts, mask = atlas.player.shape[1], atlas.player_mask  # [ts, ts] bool
    y, x = player_origin(R, motion)
    y, x = y + offset[0], x + offset[1]
    patch = frames[:, y : y + ts, x : x + ts][:, mask].astype(np.float32)  # [T, P, 3]
    sprite = atlas.player[:, mask].astype(np.float32)  # [4, P, 3]
    mse = ((patch[:, None] - sprite[None]) ** 2).mean(axis=(2, 3)).min(axis=1)  # [T]
    return np.minimum(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10)), PSNR_CAP)


# --------------------------------------------------------------------------------------------
# 4. Stability


@functools.lru_cache(maxsize=4)  # once per game: the compare checkpoint reuses it (read-only)
def teacher_reference(game: Game | int, frames: int = 24) -> dict[str, Any]:
    """What the teacher's own frames look like, over all 96 styles (RANGE_SEED_BASE seeds).

    mean/std: min/max of the per-frame mean and std. player_*: the player-sprite PSNR
    (`player_psnr`) of the frames (p1: the least a frame showing the player scores, under
    rain or snow) and of sprite-sized patches two tiles off the centre, where the player is
    not (p99: the most a frame without the player scores); the threshold sits midway.
    """
    from envs.style import BIOMES, TIMES_OF_DAY, WEATHERS, Style

    game = as_game(game)
    means, stds, present, absent = [], [], [], []
    for k in range(len(BIOMES) * len(TIMES_OF_DAY) * len(WEATHERS)):
        style = Style(BIOMES[k % 6], TIMES_OF_DAY[k // 6 % 4], WEATHERS[k // 24])
        true = teacher_run(RANGE_SEED_BASE + k, frames, game, style=style).frames
        f = true.astype(np.float32)
        means += list(f.mean(axis=(1, 2, 3)))
        stds += list(f.std(axis=(1, 2, 3)))
        present += list(player_psnr(true, style, motion=game.motion))
        ts = _atlas(style, game.resolution).player.shape[1]
        for off in ((0, 2 * ts), (2 * ts, 0), (-2 * ts, -ts)):
            absent += list(player_psnr(true, style, off, game.motion))
    p_lo, a_hi = float(np.percentile(present, 1)), float(np.percentile(absent, 99))
    return {"mean": (float(min(means)), float(max(means))), "std": (float(min(stds)), float(max(stds))),
            "player_present_p1": p_lo, "player_absent_p99": a_hi, "player_threshold": (p_lo + a_hi) / 2}


@torch.no_grad()
def eval_stability(model, ev: EvalConfig, text, seed: int, steps, game: Game, ref: dict) -> dict:
    from tqdm import tqdm

    N = ev.stability_frames
    from .eval_content import tile_threshold, tile_validity

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


# --------------------------------------------------------------------------------------------
# The whole evaluation


def run_eval(checkpoint: str | Path, ev: EvalConfig | None = None,
             compare_checkpoint: str | Path | None = None) -> tuple[dict, dict]:
    """Evaluate a checkpoint -> (JSON-able result, artifacts for the report)."""
    from world.text import build_text_encoder

    from .biome_classifier import config_for, load_or_train

    ev = ev or EvalConfig()
    ev.validate()
    t_start = time.perf_counter()
    ck = load_checkpoint(checkpoint, ev.text_encoder)
    cmp_ck = None if compare_checkpoint is None else load_checkpoint(compare_checkpoint, ev.text_encoder)
    cfg = ck.cfg
    game = Game(cfg.tokenizer.image_size, cfg.game.motion)
    text = build_text_encoder(ck.text_encoder)
    steps = ev.steps or cfg.sampler.steps
    seeds = eval_seeds(ev.seeds)
    W = cfg.memory.window_frames
    result: dict[str, Any] = {
        "checkpoint": str(ck.path),
        "model": {"preset": cfg.name, "policy": cfg.memory.policy, "rope": cfg.memory.rope, "steps": steps,
                  "text_encoder": ck.text_encoder},
        "eval_seeds": seeds, "window_frames": W,
        "psnr_by_horizon": None, "ssim_by_horizon": None, "fidelity_detail": None,
        "revisit_psnr": None, "revisit_detail": None,
        "prompt_adherence": None, "prompt_adherence_detail": None,
        "stable": None, "stability": None, "ablations": None,
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
        scores, consistency, frames = revisit_section(ck, ev, text, plan, steps, MEMORY_POLICIES)
        result["revisit_psnr"] = scores
        result["revisit_detail"] = revisit_detail(ev, plan, consistency)
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


# --------------------------------------------------------------------------------------------
# Report: report.md + PNGs


def write_report(result: dict, art: dict, out_dir: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    fmt = lambda v, p=2: "–" if v is None else f"{v:.{p}f}"  # noqa: E731
    m = result["model"]
    lines = [f"# Evaluation of `{result['checkpoint']}`", "",
             f"Model: preset {m['preset']}, policy {m['policy']}, RoPE {m['rope']}, {m['steps']} denoising steps, "
             f"text encoder {m['text_encoder']}. Eval seeds: {result['eval_seeds'][0]}..{result['eval_seeds'][-1]} "
             f"({len(result['eval_seeds'])}). Window: {result['window_frames']} frames. "
             f"Took {result['seconds']:.0f} s.", ""]
    if result["skipped"]:
        lines += [f"Skipped: {', '.join(result['skipped'])}.", ""]

    if result["psnr_by_horizon"]:
        hs = list(result["psnr_by_horizon"])
        lines += ["## Fidelity by horizon (teacher's explore actions)", "",
                  "| horizon | " + " | ".join(hs) + " |", "|---" * (len(hs) + 1) + "|",
                  "| PSNR dB | " + " | ".join(fmt(result["psnr_by_horizon"][h]) for h in hs) + " |",
                  "| SSIM | " + " | ".join(fmt(result["ssim_by_horizon"][h], 3) for h in hs) + " |",
                  "| frozen start frame, PSNR dB (baseline) | " + " | ".join(
                      fmt(result["fidelity_detail"]["frozen_start_frame_psnr_by_horizon"][h]) for h in hs) + " |",
                  "| worlds still showing the player | " + " | ".join(
                      fmt(result["fidelity_detail"]["player_visible_by_horizon"][h], 2) for h in hs) + " |",
                  *[f"| {label} | " + " | ".join(fmt(result["fidelity_detail"][key][h], digits) for h in hs) + " |"
                    for label, key, digits in (
                        ("seen content kept, PSNR dB", "seen_psnr_by_horizon", 1),
                        ("share of pixels seen in the start frame", "seen_share_by_horizon", 2),
                        ("invented content vs the model's own earlier frame, PSNR dB", "invented_psnr_by_horizon", 1),
                        ("... the teacher's own", "invented_psnr_teacher_by_horizon", 1),
                        ("tile validity", "tile_valid_by_horizon", 2))], "",
                  f"Tokenizer round trip of the true frames (the ceiling): "
                  f"{fmt(result['fidelity_detail']['tokenizer_psnr_heldout'])} dB; its tile validity "
                  f"{fmt(result['fidelity_detail']['tile_valid_tokenizer'], 2)} (the teacher's own "
                  f"{fmt(result['fidelity_detail']['tile_valid_teacher'], 2)}).", "",
                  f"Teacher-forced (the true past as context, {result['fidelity_detail']['teacher_forced_frames']} "
                  f"frames a world): PSNR {fmt(result['fidelity_detail']['teacher_forced_psnr'])} dB, the player "
                  f"drawn in {fmt(result['fidelity_detail']['teacher_forced_player_visible'], 2)} of the frames; on "
                  f"the frames that moved, {fmt(result['fidelity_detail']['teacher_forced_psnr_moved'])} dB against "
                  f"{fmt(result['fidelity_detail']['copy_previous_psnr_moved'])} dB for copying the previous "
                  "true frame.", "",
                  "![fidelity](fidelity.png)", "", "![strip](strip.png)", ""]
        det = result["fidelity_detail"]
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        x = np.arange(1, len(det["psnr_curve"]) + 1)
        for a, curve, key, label in ((ax[0], det["psnr_curve"], "psnr_by_horizon", "PSNR (dB)"),
                                     (ax[1], det["ssim_curve"], "ssim_by_horizon", "SSIM")):
            a.plot(x, [np.nan if v is None else v for v in curve], color="0.7", lw=1, label="every frame")
            hv = [int(h) for h in result[key]]
            a.plot(hv, [np.nan if result[key][str(h)] is None else result[key][str(h)] for h in hv],
                   "o-", label="horizons")
            a.set_xscale("log")
            a.set_xlabel("frames after the start frame")
            a.set_ylabel(label)
            a.grid(alpha=0.3)
        ax[0].legend()
        fig.suptitle("Generated vs true frames")
        fig.tight_layout()
        fig.savefig(d / "fidelity.png", dpi=110)
        plt.close(fig)
        _strip(plt, art["strip_true"], art["strip_gen"], art["strip_cols"], d / "strip.png")

    if result["revisit_psnr"]:
        rp, det = result["revisit_psnr"], result["revisit_detail"]
        aways = [str(a) for a in det["away_frames"]]
        lines += ["## Revisit memory (PSNR of the frames back at the place left)", "",
                  f"Lead-in {det['lead_in']} frames, then out A/2 and back A/2, then {det['return_frames']} "
                  f"NOOP frames scored. Clean trajectories (never blocked, back exactly): "
                  f"{det['clean_share']:.0%}.", "",
                  "| policy | " + " | ".join(f"A={a}" for a in aways) + " |", "|---" * (len(aways) + 1) + "|"]
        lines += [f"| {p} | " + " | ".join(fmt((v or {}).get(a)) for a in aways) + " |" for p, v in rp.items()]
        abl = (result.get("ablations") or {}).get("memory_updates_off", {})
        if "revisit_psnr" in abl:
            lines += ["| evolving, no updates | " + " | ".join(fmt(abl["revisit_psnr"][a]) for a in aways) + " |"]
        lines += ["", "Consistency (return frames vs the model's own frame at departure, dB): " +
                  "; ".join(f"{p}: " + ", ".join(fmt((v or {}).get(a)) for a in aways)
                            for p, v in det["consistency_psnr"].items())
                  + "; teacher: " + ", ".join(fmt(det["teacher_consistency_psnr"][a]) for a in aways), "",
                  "![revisit](revisit.png)", "", "![revisit strip](revisit_strip.png)", ""]
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for p, v in rp.items():
            if v is not None:
                ax.plot([int(a) for a in aways], [np.nan if v[a] is None else v[a] for a in aways], "o-", label=p)
        if "revisit_psnr" in abl:
            ax.plot([int(a) for a in aways], [np.nan if abl["revisit_psnr"][a] is None else abl["revisit_psnr"][a]
                                              for a in aways], "x--", color="0.4", label="evolving, no updates")
        ax.axvline(result["window_frames"], color="0.8", ls=":", label="window size")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("away time A (frames)")
        ax.set_ylabel("PSNR on return (dB)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(d / "revisit.png", dpi=110)
        plt.close(fig)
        _revisit_strip(plt, art["revisit"], d / "revisit_strip.png")

    if result["prompt_adherence_detail"]:
        a = result["prompt_adherence_detail"]
        lines += ["## Prompt adherence (biome classifier)", "",
                  f"Classifier held-out accuracy on teacher frames: {a['classifier_accuracy']:.1%}.", "",
                  "| | model | teacher (ceiling) |", "|---|---|---|",
                  f"| start, train captions | {a['start_train']:.1%} | {a['start_teacher']:.1%} |",
                  f"| start, held-out paraphrases | {a['start_heldout']:.1%} | |",
                  f"| switch: within {a['switch_frames']} frames | {a['switch_within']:.1%} | "
                  f"{a['switch_within_teacher']:.1%} |",
                  f"| switch: at frame {a['switch_frames']} | {a['switch_at']:.1%} | {a['switch_at_teacher']:.1%} |",
                  f"| switch, held-out paraphrase: within / at | {a['switch_within_heldout']:.1%} / "
                  f"{a['switch_at_heldout']:.1%} | |", "",
                  "Per biome (start, train captions): " +
                  ", ".join(f"{b} {v:.0%}" for b, v in a["per_biome"].items()), "",
                  f"Per biome (switch to it, within {a['switch_frames']} frames): " +
                  ", ".join(f"{b} {fmt(None if v is None else 100 * v, 0)}%" for b, v in a["switch_per_biome"].items()),
                  "",
                  "![adherence after a switch](adherence.png)", ""]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key, label in (("switch_curve", "model, train captions"),
                           ("switch_curve_heldout", "model, held-out paraphrases"),
                           ("switch_curve_teacher", "teacher (ceiling)")):
            ax.plot(range(1, len(a[key]) + 1), a[key], marker=".", label=label)
        ax.set_xlabel("frames after the prompt switch")
        ax.set_ylabel("share showing the new biome")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(d / "adherence.png", dpi=110)
        plt.close(fig)

    if result["stability"]:
        s = result["stability"]
        lines += ["## Stability", "",
                  f"{s['frames']} frames of random actions: **{'stable' if result['stable'] else 'NOT stable'}**. "
                  f"NaN-free: {s['nan_free']}; frames out of the teacher's range: {s['out_of_range_frames']} "
                  f"(mean {fmt(s['frame_mean_range'][0], 1)}..{fmt(s['frame_mean_range'][1], 1)}, allowed "
                  f"{fmt(s['allowed_mean_range'][0], 1)}..{fmt(s['allowed_mean_range'][1], 1)}; std "
                  f"{fmt(s['frame_std_range'][0], 1)}..{fmt(s['frame_std_range'][1], 1)}, allowed "
                  f"{fmt(s['allowed_std_range'][0], 1)}..{fmt(s['allowed_std_range'][1], 1)}); latency p50 "
                  f"{s['latency_ms_p50']:.1f} ms, last/first {s['ratio_window_frames']} frames: wall "
                  f"{s['latency_ratio_last_first']:.2f}, CPU p50 {s['cpu_ratio_last_first_p50']:.2f}. "
                  f"The player is still drawn in {s['player_visible_share']:.1%} of the frames (first / last "
                  f"{s['ratio_window_frames']}: {s['player_visible_share_first_last'][0]:.1%} / "
                  f"{s['player_visible_share_first_last'][1]:.1%}; needed {s['player_visible_min']:.0%}).", ""]

    if result["ablations"]:
        lines += ["## Ablations", ""]
        rope = result["ablations"].get("rope", {})
        if "psnr_curve" in rope and result["fidelity_detail"]:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for name, curve in ((result["model"]["rope"], result["fidelity_detail"]["psnr_curve"]),
                                (rope["rope"], rope["psnr_curve"])):
                ax.plot(np.arange(1, len(curve) + 1), [np.nan if v is None else v for v in curve],
                        label=f"rope={name}")
            ax.set_xscale("log")
            ax.set_xlabel("frames after the start frame")
            ax.set_ylabel("PSNR vs true frames (dB)")
            ax.grid(alpha=0.3)
            ax.legend()
            fig.tight_layout()
            fig.savefig(d / "rope.png", dpi=110)
            plt.close(fig)
            lines += ["![RoPE ablation: PSNR by frame](rope.png)", ""]
        lines += ["```json", json.dumps(result["ablations"], indent=1), "```", ""]
    (d / "report.md").write_text("\n".join(lines))
    return d / "report.md"


def _strip(plt, true: np.ndarray, gen: np.ndarray, cols: list[int], path: Path) -> None:
    """Rows: (true, generated) per seed; columns: the start frame and each horizon."""
    rows = [r for i in range(len(true)) for r in ((f"true #{i}", true[i]), (f"model #{i}", gen[i]))]
    fig, ax = plt.subplots(len(rows), len(cols), figsize=(1.3 * len(cols), 1.4 * len(rows)), squeeze=False)
    for r, (name, frames) in enumerate(rows):
        for c, h in enumerate(cols):
            ax[r, c].imshow(frames[c], interpolation="nearest")
            ax[r, c].set_xticks([])
            ax[r, c].set_yticks([])
            if r == 0:
                ax[r, c].set_title("start" if h == 0 else f"h={h}", fontsize=8)
            if c == 0:
                ax[r, c].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _revisit_strip(plt, revisit, path: Path) -> None:
    """First seed, longest away time: departure, farthest point, return (truth and every policy)."""
    plan, frames = revisit
    away = max(plan)
    r = plan[away][0]
    dep, far, back = r.depart, r.depart + away // 2, len(r.episode.actions)
    rows = [("teacher", r.episode.frames)] + [(p, f[away][0]) for p, f in frames.items()]
    fig, ax = plt.subplots(len(rows), 3, figsize=(4.2, 1.4 * len(rows)), squeeze=False)
    for i, (name, fr) in enumerate(rows):
        for j, (t, title) in enumerate(((dep, "departure"), (far, "farthest"), (back, "return"))):
            ax[i, j].imshow(fr[t], interpolation="nearest")
            ax[i, j].set_xticks([])
            ax[i, j].set_yticks([])
            if i == 0:
                ax[i, j].set_title(f"{title} (f{t})", fontsize=8)
            if j == 0:
                ax[i, j].set_ylabel(name, fontsize=8)
    fig.suptitle(f"revisit, A={away}, seed {r.episode.seed}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_json(result: dict, path: str | Path) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
