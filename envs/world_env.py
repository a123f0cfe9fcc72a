"""The world model as a Gymnasium env (`EchoInfinity/World-v0`): play inside the model's dream.

DIAMOND's `envs/world_model_env.py` layering: the model sits behind a
`runtime.Session`, this env adds the Gymnasium contract on top. It shares its
spaces with the teacher (`EchoInfinity/Teacher-v0`), so an agent trained in one
can be evaluated in the other:

    env = gym.make("EchoInfinity/World-v0", start="teacher")       # after `import envs`
    obs, info = env.reset(seed=3, options={"prompt": "a snowy forest at dusk"})
    obs, reward, terminated, truncated, info = env.step(4)          # RIGHT
    env.unwrapped.set_prompt("a volcanic plain at night")           # live, no reset

Spaces: observation `Box(0, 255, (R, R, 3), uint8)` (R = the checkpoint's frame
size, 64 for tiny), action `Discrete(6)` with the teacher's meanings
(`get_action_meanings()`: NOOP, UP, DOWN, LEFT, RIGHT, USE); on a Crafter checkpoint
(`game.env = "crafter"`) `Discrete(17)` with Crafter's (envs/crafter.py), sharing its
spaces with `EchoInfinity/Crafter-v0` instead.

Dynamics, all from the model: `reward` is what the model's reward head pays
(`WorldModel.outcome`: 1 where its pickup classifier passes 0.5 with
`dit.outcome_heads = "centre"`, the regressed value with the older pooled heads);
`terminated` is True when the done head's probability exceeds `done_threshold`
(0.5 by default; the probability is in `info["done_prob"]`); `truncated` comes
from `max_episode_steps` (1000 for the registered id, as for Teacher-v0; the
`TimeLimit` wrapper applies it here, the vector env applies it itself).

reset(seed=..., options=...), all options optional:
  "prompt": str, the world's description for this episode (else the env's
            `prompt`; "" is unconditional);
  "start_frame": uint8 [R, R, 3], the episode's first frame (the model goes on from it);
  "snapshot": path of a world written by `Session.save` / `env.unwrapped.save`
            (it carries its own prompt and frames: give it alone).
Options apply to that reset only; `reset()` without options goes back to the
constructor's `prompt` and `start`.

start="teacher": the first frame is the real game's first frame for the same
seed (`Teacher-v0.reset(seed=seed, options={"prompt": prompt})`; `Crafter-v0.reset(seed=seed)`
for a Crafter checkpoint, whose prompt is its fixed caption), so the world
begins where the model was trained; an empty prompt then takes the teacher's
caption of the style it drew, so the prompt describes the frame. The teacher
runs in the checkpoint's motion mode (`game.motion`: "smooth" or "tile", also
the env's `motion` attribute, which the recording policies read).

backend: "torch" (default, the reference), a named backend (onnxruntime, ...), or "auto":
the fastest that runs here and draws the frames eager torch draws, with the thread count
that measured fastest (runtime/calibrate.py; timed once per machine and checkpoint at one
world, cached).

Creating the env sets glibc's malloc thresholds for the process (`world.allocator`: freed
tensor memory is kept for reuse instead of returned and re-zeroed; the CLI does the same).

info: "frame" (the world's frame index), "latency_ms" (model time of the step,
a `Timing`), "steps" (denoising steps), "prompt", and on steps "done_prob".

Randomness: every draw comes from `self.np_random` (the session's seed, the
teacher's seed when none is given), so the same seed and actions give the same
frames and `check_env` passes as a deterministic env.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from runtime.session import Session
from world.allocator import keep_freed_memory
from world.model import CONFIG_FILE, WEIGHTS_FILE, WorldModel

from .games import make_game
from .teacher import RESOLUTIONS

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "tiny"
DONE_THRESHOLD = 0.5  # terminated when the done head's probability is above this
RESET_OPTIONS = ("prompt", "start_frame", "snapshot")
STARTS = ("generated", "teacher")
SEED_BOUND = 2**62  # session seeds are drawn from [0, SEED_BOUND)
TEACHER_SEED_BOUND = 2**31  # teacher seeds drawn when reset() gets none
WINDOW_PIXELS = 512  # human render window size


class Timing(float):
    """A wall-clock measurement in `info` (milliseconds).

    A float for every use (arithmetic, formatting, logging), except that two
    Timings compare equal whatever their values: a timing is a measurement, not
    part of the transition, and Gymnasium's determinism check (`check_env`)
    compares step infos exactly.
    """

    __slots__ = ()
    __hash__ = None  # equality ignores the value, so no hash can agree with it

    def __eq__(self, other):
        return True if isinstance(other, Timing) else float.__eq__(self, other)

    def __ne__(self, other):
        return not self.__eq__(other)


# -- shared by the single and the vector env --------------------------------------------


def make_session(checkpoint, batch: int | None, steps: int | None, policy: str | None, text_encoder: str,
                 device: str, backend: str = "torch"):
    """A `Session` on `checkpoint` (a directory, a `WorldModel`, or None: the shipped checkpoint).
    backend "auto": the fastest backend (and thread count) that runs here and matches eager torch,
    calibrated once per machine and checkpoint (runtime/calibrate.py, timed at one world)."""
    if checkpoint is None:
        checkpoint = DEFAULT_CHECKPOINT
    if not isinstance(checkpoint, (str, os.PathLike, WorldModel)):
        raise TypeError(f"checkpoint must be a directory path or a WorldModel, got {type(checkpoint).__name__}")
    if not isinstance(checkpoint, WorldModel):
        d = Path(checkpoint)
        if not ((d / WEIGHTS_FILE).is_file() and (d / CONFIG_FILE).is_file()):
            raise FileNotFoundError(f"no checkpoint at {d} (it needs {WEIGHTS_FILE} + {CONFIG_FILE}): "
                                    "run `make train` or pass checkpoint=DIR")
    # An RL script imports the env, not the CLI, so the env sets glibc's malloc thresholds itself
    # (process-wide, as the CLI does): without them every step re-zeroes freshly mmapped pages,
    # which cost a B = 32 step more than its snap's matmul (docs/RESULTS.md, issue 17).
    keep_freed_memory()
    if backend == "auto":
        from runtime.calibrate import choose
        from runtime.session import checkpoint_hash

        model = checkpoint if isinstance(checkpoint, WorldModel) else WorldModel.load(d, device=device, policy=policy)
        where = None if isinstance(checkpoint, WorldModel) else d
        backend = choose(model, checkpoint_hash(model, where), "auto", None, 20.0, device=device,
                         say=lambda line: None).backend
    session = Session(checkpoint, batch=batch, device=device, steps=steps, policy=policy, text_encoder=text_encoder,
                      backend=backend)
    if session.cfg.memory.chunk_frames != 1:
        raise ValueError("World-v0 shows one frame per action; this checkpoint generates chunks of "
                         f"{session.cfg.memory.chunk_frames} frames (memory.chunk_frames)")
    return session


def check_start(start: str, resolution: int) -> str:
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    if start == "teacher" and resolution not in RESOLUTIONS:
        raise ValueError(f"start='teacher' needs a checkpoint frame size in {RESOLUTIONS}, got {resolution}")
    return start


class ResetOptions(NamedTuple):
    prompt: list[str] | None  # one per world, or None: the env's default
    start_frame: np.ndarray | None  # uint8 [n, R, R, 3]
    snapshot: Path | None


def parse_options(options: Mapping[str, Any] | None, batch: int | None, resolution: int) -> ResetOptions:
    """Check reset options; `batch=None` is the single env (one prompt, one frame)."""
    if options is None:
        return ResetOptions(None, None, None)
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict with keys {RESET_OPTIONS}, got {type(options).__name__}")
    unknown = sorted(set(options) - set(RESET_OPTIONS))
    if unknown:
        raise ValueError(f"unknown reset options {unknown}; valid: {', '.join(map(repr, RESET_OPTIONS))}")
    n = 1 if batch is None else batch
    prompt = options.get("prompt")
    if prompt is not None:
        if isinstance(prompt, str):
            prompt = [prompt] * n
        elif batch is None:
            raise TypeError(f"options['prompt'] must be a str, got {type(prompt).__name__}")
        elif isinstance(prompt, (Sequence, np.ndarray)):
            prompt = list(prompt)
            if len(prompt) != n:
                raise ValueError(f"options['prompt'] needs one str for all envs or {n} (one per env), "
                                 f"got {len(prompt)}")
            bad = [type(p).__name__ for p in prompt if not isinstance(p, str)]
            if bad:
                raise TypeError(f"options['prompt'] entries must be str, got {bad[0]}")
        else:
            raise TypeError(f"options['prompt'] must be a str or a list of {n} str, got {type(prompt).__name__}")
    frame = options.get("start_frame")
    if frame is not None:
        R = resolution
        shapes = [(R, R, 3)] if batch is None else [(R, R, 3), (n, R, R, 3)]
        want = " or ".join(f"uint8 {list(s)}" for s in shapes)
        if not isinstance(frame, np.ndarray):
            raise TypeError(f"options['start_frame'] must be a numpy array, {want}; got {type(frame).__name__}")
        if frame.dtype != np.uint8:
            raise TypeError(f"options['start_frame'] must be {want}, got dtype {frame.dtype}")
        if frame.shape not in shapes:
            raise ValueError(f"options['start_frame'] must be {want}, got shape {list(frame.shape)}")
        frame = np.broadcast_to(frame, (n, R, R, 3)).copy()
    snapshot = options.get("snapshot")
    if snapshot is not None:
        if not isinstance(snapshot, (str, os.PathLike)):
            raise TypeError(f"options['snapshot'] must be a path (str or Path), got {type(snapshot).__name__}")
        if prompt is not None or frame is not None:
            raise ValueError("options['snapshot'] restores the world's own prompt and frames: give it alone")
        snapshot = Path(snapshot)
    return ResetOptions(prompt, frame, snapshot)


class EpisodeStarts:
    """A new episode's draws: the session's seed, the prompt and (start="teacher") the first frame
    of the checkpoint's real game (`game.env`: the teacher in its motion mode, or Crafter)."""

    def __init__(self, start: str, resolution: int, game):
        self.start = start
        self.resolution = resolution
        self.game = game  # the checkpoint's GameConfig: the real game moves as the model learnt
        self._teacher: gym.Env | None = None

    def draw(self, rng: np.random.Generator, seed: int | None, prompt: str,
             use_teacher: bool = True) -> tuple[int, str, np.ndarray | None]:
        """-> (session seed, prompt, first frame uint8 [R, R, 3] or None: generated)."""
        world_seed = int(rng.integers(0, SEED_BOUND))
        if self.start != "teacher" or not use_teacher:
            return world_seed, prompt, None
        teacher_seed = int(seed) if seed is not None else int(rng.integers(0, TEACHER_SEED_BOUND))
        if self._teacher is None:
            self._teacher = make_game(self.game, self.resolution)
        styled = prompt and self.game.env == "teacher"  # Crafter has no prompt to draw a style from
        frame, info = self._teacher.reset(seed=teacher_seed, options={"prompt": prompt} if styled else None)
        return world_seed, prompt or info["caption"], frame


def action_error(action, meanings: Sequence[str]) -> Exception:
    """The error for an action that is not one of the game's (`meanings`)."""
    valid = f"an int in [0, {len(meanings)}): " + ", ".join(f"{i} {m}" for i, m in enumerate(meanings))
    a = np.asarray(action) if not isinstance(action, (str, bytes)) else None
    if a is None or a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        kind = type(action).__name__ if a is None or a.ndim == 0 else f"{a.dtype} array"
        return TypeError(f"action must be {valid}; got {kind} {action!r:.60}")
    return ValueError(f"invalid action {action!r:.60}: expected {valid}")


class HumanWindow:
    """The `render_mode="human"` window; pygame is imported when it first opens."""

    def __init__(self, title: str):
        self.title = title
        self._screen = None

    def show(self, frame: np.ndarray) -> None:
        if self._screen is None:
            self._open(*frame.shape[:2])
        import pygame

        surf = pygame.surfarray.make_surface(np.ascontiguousarray(frame.swapaxes(0, 1)))
        self._screen.blit(pygame.transform.scale(surf, self._screen.get_size()), (0, 0))
        pygame.event.pump()
        pygame.display.flip()

    def _open(self, h: int, w: int) -> None:
        driver = os.environ.get("SDL_VIDEODRIVER", "")
        if (sys.platform.startswith("linux") and driver in ("", "x11", "wayland")
                and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))):
            raise RuntimeError("render_mode='human' opens a window, but there is no display (DISPLAY and "
                               "WAYLAND_DISPLAY are unset): use render_mode='rgb_array', or set "
                               "SDL_VIDEODRIVER=dummy to run the human mode headless")
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        try:
            import pygame
        except ImportError as e:
            raise RuntimeError(f"render_mode='human' needs pygame: pip install 'pygame>=2.5' ({e})") from e
        try:
            pygame.display.init()
            self._screen = pygame.display.set_mode((WINDOW_PIXELS * w // max(h, w), WINDOW_PIXELS * h // max(h, w)))
        except pygame.error as e:
            raise RuntimeError(f"render_mode='human' could not open a window ({e}); use "
                               "render_mode='rgb_array' (RecordVideo saves videos from it)") from e
        pygame.display.set_caption(self.title)

    def close(self) -> None:
        if self._screen is not None:
            import pygame

            pygame.display.quit()
            self._screen = None


def tile(frames: np.ndarray) -> np.ndarray:
    """[B, H, W, 3] -> one near-square grid image (the vector env's human window)."""
    B, H, W, C = frames.shape
    cols = int(np.ceil(np.sqrt(B)))
    rows = -(-B // cols)
    grid = np.zeros((rows * H, cols * W, C), np.uint8)
    for b in range(B):
        r, c = divmod(b, cols)
        grid[r * H:(r + 1) * H, c * W:(c + 1) * W] = frames[b]
    return grid


# -- the env ---------------------------------------------------------------------------------


class WorldEnv(gym.Env):
    """One world of the model as a Gymnasium env (see the module docstring).

    checkpoint: a directory with model.safetensors + config.json (default: the
      shipped `checkpoints/tiny`), or a `WorldModel` instance;
    steps: denoising steps per frame (default: the checkpoint's sampler config);
    policy: memory policy to run the weights with (default: the checkpoint's);
    text_encoder: "minilm" (the real encoder) or "hash" (tests);
    device: torch device; prompt: the default prompt ("" = unconditional);
    start: "generated" (the first frame comes from the prompt) or "teacher"
      (the teacher game's first frame for the same seed);
    done_threshold: `terminated` when the done probability is above it (0.5).
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None, checkpoint=None, steps: int | None = None,
                 policy: str | None = None, text_encoder: str = "minilm", device: str = "cpu",
                 prompt: str = "", start: str = "generated", done_threshold: float = DONE_THRESHOLD,
                 backend: str = "torch"):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render_mode {render_mode!r}; choose one of {self.metadata['render_modes']}")
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        self.render_mode = render_mode
        # batch=1, not a single-world session: a non-finite frame then ends the episode (done 1)
        # instead of raising, and no rewind snapshots are taken (an env never rewinds)
        self.session = make_session(checkpoint, 1, steps, policy, text_encoder, device, backend)
        self.resolution = self.session.cfg.tokenizer.image_size
        self.motion = self.session.cfg.game.motion  # "smooth" or "tile": how one move moves
        self.start = check_start(start, self.resolution)
        self.default_prompt = prompt
        self.done_threshold = float(done_threshold)
        self.observation_space = spaces.Box(0, 255, (self.resolution, self.resolution, 3), np.uint8)
        self.action_space = spaces.Discrete(self.session.num_actions)
        self._starts = EpisodeStarts(self.start, self.resolution, self.session.cfg.game)
        self._window = HumanWindow("Echo-Infinity world model")
        self._frame: np.ndarray | None = None
        self._closed = False

    # --- Gymnasium API -------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._require_open()
        opts = parse_options(options, None, self.resolution)
        t0 = time.perf_counter()
        if opts.snapshot is not None:
            frame = self.session.load(opts.snapshot)[0]
        else:
            prompt = opts.prompt[0] if opts.prompt is not None else self.default_prompt
            world_seed, prompt, first = self._starts.draw(self.np_random, seed, prompt,
                                                          use_teacher=opts.start_frame is None)
            start = opts.start_frame[0] if opts.start_frame is not None else first
            frame = self.session.reset(seed=world_seed, prompt=prompt, start_frame=start)[0]
        self._frame = frame.copy()
        info = self._info((time.perf_counter() - t0) * 1e3)
        if self.render_mode == "human":
            self.render()
        return self._frame.copy(), info

    def step(self, action):
        self._require_open()
        if self._frame is None:
            raise RuntimeError("call reset() before step()")
        if isinstance(action, (bool, np.bool_)) or not self.action_space.contains(action):
            raise action_error(action, self.session.action_meanings)
        out = self.session.advance(np.array([int(action)]))
        self._frame = out.frames[0].copy()
        done_prob = float(out.done[0])
        info = self._info(out.latency_ms)
        info["done_prob"] = done_prob
        if self.render_mode == "human":
            self.render()
        return self._frame.copy(), float(out.reward[0]), done_prob > self.done_threshold, False, info

    def render(self):
        if self._frame is None:
            raise RuntimeError("call reset() before render()")
        if self.render_mode == "human":
            self._window.show(self._frame)
            return None
        return self._frame.copy()

    def close(self):
        self._window.close()
        self.session = None  # frees the model's caches; closing twice is fine
        self._closed = True

    # --- the world -----------------------------------------------------------------
    def get_action_meanings(self) -> list[str]:
        return list(self.session.action_meanings)

    def set_prompt(self, text: str) -> None:
        """Change the world's description mid-episode (no reset; the next frames follow it).
        The episode keeps it until the next reset, which goes back to the default prompt."""
        self._require_open()
        if self._frame is None:
            raise RuntimeError("call reset() before set_prompt()")
        self.session.set_prompt(text)

    @property
    def prompt(self) -> str:
        """The prompt the world follows now."""
        return self.session.prompts[0] if self.session is not None else self.default_prompt

    def save(self, path: str | os.PathLike) -> Path:
        """Write the world to a snapshot file; `reset(options={"snapshot": path})` resumes it."""
        self._require_open()
        return self.session.save(path)

    def _info(self, latency_ms: float) -> dict[str, Any]:
        return {"frame": self.session.frame_index, "latency_ms": Timing(latency_ms),
                "steps": self.session.fixed_steps, "prompt": self.session.prompts[0]}

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError("this env is closed")
