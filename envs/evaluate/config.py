"""What is evaluated: the eval's seeds, the game it plays and `EvalConfig`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


EVAL_SEED_BASE = 90_000
"""Eval seed i is 90_000 + i (teacher reset seed and model noise seed)."""
PROXY_SEED_BASE = 70_000
"""Proxy seed i is 70_000 + i: held out from training like the eval seeds, but the ones levers
are chosen on (the learn bench, `eval --proxy`), so nothing is tuned on the eval seeds."""
TRAINING_RECORD_SEEDS = (1, 2)
"""`--seed` of the recordings `make train` learns from (episode env seeds derive from them)."""
RANGE_SEED_BASE = 80_000
"""Teacher seeds of the frames that measure the teacher's own mean/std range."""
SECTIONS = ("fidelity", "revisit", "adherence", "stability", "ablations", "heads")
MEMORY_POLICIES = ("window", "sink", "compress", "evolving")
PSNR_CAP = 100.0
EVENT_THRESHOLD = 0.5  # a reward head value or done probability above it is an event (as World-v0 ends one)
NOOP = 0  # teacher actions: NOOP UP DOWN LEFT RIGHT USE
TEACHER_ACTIONS = 6
MOVE = {"UP": 1, "DOWN": 2, "LEFT": 3, "RIGHT": 4}
INVERSE = {"UP": "DOWN", "DOWN": "UP", "LEFT": "RIGHT", "RIGHT": "LEFT"}
PERPENDICULAR = {"UP": ("LEFT", "RIGHT"), "DOWN": ("RIGHT", "LEFT"),
                 "LEFT": ("DOWN", "UP"), "RIGHT": ("UP", "DOWN")}


@dataclass(frozen=True)
class Game:
    """How the real game draws the checkpoint's world: frame side, motion mode (`game.motion`)
    and which game (`game.env`: the teacher, or Crafter)."""

    resolution: int
    motion: str = "smooth"
    env: str = "teacher"


def as_game(game: "Game | int") -> Game:
    """A Game; a bare int is a resolution in the smooth mode (the checkpoints before issue 14)."""
    return game if isinstance(game, Game) else Game(int(game))


def eval_seeds(n: int, proxy: bool = False) -> list[int]:
    return [(PROXY_SEED_BASE if proxy else EVAL_SEED_BASE) + i for i in range(n)]


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
    heads_worlds: int = 32
    """Heads: worlds played (their own seeds, from the first eval seed on); gem pickups are
    ~6 per 1,000 explore frames, so a few dozen worlds give a few dozen events."""
    heads_frames: int = 256
    """Heads: frames per world."""
    heads_slip: float = 0.05
    """Heads: the explore policy's chance of walking into a hazard it would avoid (episode ends)."""
    seeker_steps: int = 300
    """Heads: steps of the scripted gem seeker in each world, teacher and dream (envs/evaluate/seeker.py;
    0: not run)."""
    stability_frames: int = 10_000
    """Stability: frames of the free rollout."""
    flat_ratio_max: float = 1.25
    """Stability: largest allowed CPU-time ratio last/first frames."""
    player_visible_min: float = 0.9
    """Stability: least share of frames that must still show the player (the teacher's: all)."""
    steps: int | None = None
    """Denoising steps per frame (None: the checkpoint's sampler.steps)."""
    guidance: float | None = None
    """Classifier-free guidance scale (None: the checkpoint's sampler.guidance)."""
    switch_guidance: float | None = None
    """Guidance scale after a prompt switch (None: the checkpoint's sampler.switch_guidance)."""
    proxy: bool = False
    """Play the proxy seeds instead of the eval seeds: for choosing a setting (a guidance
    scale, a lever) without tuning on the eval seeds."""
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
                    stability_frames=200, heads_worlds=2, heads_frames=16, seeker_steps=16, quick=True)
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
        need(self.heads_worlds >= 1 and self.heads_frames >= 1, "heads worlds and frames must be >= 1")
        need(0 <= self.heads_slip <= 1, f"heads slip must be in [0, 1], got {self.heads_slip}")
        need(self.seeker_steps >= 0, f"seeker steps must be >= 0, got {self.seeker_steps}")
        need(self.stability_frames >= 8, f"--stability-frames must be >= 8, got {self.stability_frames}")
        need(self.steps is None or 1 <= self.steps <= 64, f"--steps must be in [1, 64], got {self.steps}")
        need(self.guidance is None or 0 <= self.guidance <= 10, f"--guidance must be in [0, 10], got {self.guidance}")
        need(self.switch_guidance is None or 0 <= self.switch_guidance <= 10,
             f"--switch-guidance must be in [0, 10], got {self.switch_guidance}")
        unknown = sorted(set(self.skip) - set(SECTIONS))
        need(not unknown, f"unknown section(s) to skip {unknown}; choose from {', '.join(SECTIONS)}")
        need(self.text_encoder in ("auto", "minilm", "hash"),
             f"text encoder must be auto, minilm or hash, got {self.text_encoder!r}")
