"""A running world: the model, its state, a frame budget, save/load/rewind.

Every front end sits on `Session`: the play window and the kiosk (one world,
paced to the clock), the Gymnasium envs (B worlds, unpaced), the bench.

    s = Session("checkpoints/tiny", budget=BudgetConfig(fps=20))
    frame = s.reset(seed=3, prompt="a snowy forest at dusk")   # uint8 [H, W, 3]
    frame = s.step(RIGHT)                                      # next frame
    s.set_prompt("a volcanic plain at night")                  # live, no reset
    s.save("saves/world.safetensors"); s.load("saves/world.safetensors")

I/O shapes: `Session(batch=None)` (the default) is one world with unbatched
I/O (an int action in, one `[H, W, 3]` frame out). `Session(batch=B)` steps B
worlds in one forward pass with batched I/O (actions `[B]`, frames
`[B, H, W, 3]`), each world with its own seed, prompt and state.

Determinism: the same checkpoint, seeds, prompts, actions (and denoising
steps) give the same frames on the same backend; noise comes from one
generator per world, so a world's frames do not depend on its batch.

Frame budget: with a `BudgetConfig`, the denoising steps of each frame are
picked from measured latency (`FrameBudget`, with hysteresis) and, with
`pace=True`, each `step` returns at the frame's deadline (`Pacer`), counting
every miss. Without a budget the steps stay fixed (`steps`, default from the
checkpoint's sampler config) and nothing sleeps.

Faults: a step whose output is not finite never reaches the caller as
frames. One world goes back to its newest rewind snapshot (a second or less
ago) and raises `FrameError` (the kiosk's watchdog catches it and goes on);
in a batch the bad worlds restart fresh with reward 0 and done 1 (a warning),
the others go on.

Bad files: a checkpoint directory without its two files raises
FileNotFoundError; a damaged, truncated or foreign weights file, weights that
do not fit their config, or NaN/Inf weights raise `world.CheckpointError`; a
bad snapshot `SnapshotError` (both ValueErrors, naming the file). Nothing is
half-loaded: a failed `load` leaves the session as it was.
"""
from __future__ import annotations

import dataclasses

import hashlib
import json
import time
import warnings
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from world.actions import game_actions
from world.model import CONFIG_FILE, WEIGHTS_FILE, WorldModel
from world.text import build_text_encoder

from .budget import BudgetConfig, FrameBudget, Pacer
from .rewind import RewindBuffer
from .snapshot import load_snapshot, save_snapshot

LATENCY_WINDOW = 1000  # frames kept for the latency percentiles in stats()
DEFAULT_FPS = 20.0  # the frame rate rewind counts seconds in when there is no budget


class FrameError(RuntimeError):
    """One world's step produced no usable frame (non-finite output); it went back a little."""


class StepOutput(NamedTuple):
    """One step of all worlds (batched arrays even for a single world)."""

    frames: np.ndarray  # uint8 [B, H, W, 3]
    reward: np.ndarray  # float32 [B], the reward head
    done: np.ndarray  # float32 [B], episode-end probability from the done head
    latency_ms: float  # model time of this step (before any pacing wait)
    steps: int  # denoising steps used


def checkpoint_hash(model: WorldModel, directory: Path | None) -> str:
    """What a snapshot is tied to: the weights and the config they run with."""
    h = hashlib.sha256()
    if directory is not None:
        h.update((directory / WEIGHTS_FILE).read_bytes())
    else:  # an in-memory model (tests): hash its tensors
        for name, t in sorted(model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    h.update(json.dumps(model.cfg.to_dict(), sort_keys=True).encode())
    return h.hexdigest()


class Session:
    """The model behind one static-shape step for B worlds, plus budget and snapshots."""

    def __init__(self, checkpoint: str | Path | WorldModel, *, batch: int | None = None,
                 backend: str = "torch", device: str = "cpu", budget: BudgetConfig | None = None,
                 pace: bool = False, steps: int | None = None, policy: str | None = None,
                 text_encoder: str = "minilm", rewind_seconds: float = 5.0, rewind_every: int = 10):
        if batch is not None and (not isinstance(batch, int) or batch < 1):
            raise ValueError(f"batch must be None (one world) or an int >= 1, got {batch!r}")
        if isinstance(checkpoint, WorldModel):
            model, directory = checkpoint, None
            if policy is not None and policy != model.cfg.memory.policy:
                raise ValueError("policy= needs a checkpoint directory, not a model instance")
        else:
            directory = Path(checkpoint)
            if not (directory / WEIGHTS_FILE).is_file() or not (directory / CONFIG_FILE).is_file():
                raise FileNotFoundError(f"{directory} is not a checkpoint: it needs {WEIGHTS_FILE} and {CONFIG_FILE}")
            model = WorldModel.load(directory, device=device, policy=policy)
        self.model = model.eval().to(device)
        self.cfg = self.model.cfg
        self.checkpoint = str(directory) if directory is not None else "<in-memory model>"
        self.checkpoint_hash = checkpoint_hash(self.model, directory)
        self.single = batch is None
        self.batch = 1 if batch is None else batch
        self.device = torch.device(device)
        self.backend = self._make_backend(backend)
        self.text = build_text_encoder(text_encoder, cache_size=1024)
        self.action_meanings = list(game_actions(self.cfg.game.env))
        self.num_actions = len(self.action_meanings)  # the game's actions; spare embeddings stay unused
        self.fixed_steps = self.cfg.sampler.steps if steps is None else steps
        if not isinstance(self.fixed_steps, int) or not 1 <= self.fixed_steps <= 64:
            raise ValueError(f"steps must be an int in [1, 64], got {steps!r}")
        if budget is not None and budget.max_steps > self.cfg.sampler.max_steps:
            cap = self.cfg.sampler.max_steps  # the model's own limit (sampler.max_steps) wins
            budget = dataclasses.replace(budget, max_steps=cap, start_steps=min(budget.start_steps, cap),
                                         min_steps=min(budget.min_steps, cap))
        self.budget = FrameBudget(budget) if budget is not None else None
        self.fps = budget.fps if budget is not None else DEFAULT_FPS
        self.pacer = Pacer(self.fps) if (budget is not None and pace) else None
        self.rewind_buffer = RewindBuffer(rewind_seconds, self.fps, rewind_every)
        self.state = None
        self.prompts: list[str] = [""] * self.batch
        self.frames: np.ndarray | None = None  # last frames shown, uint8 [B, H, W, 3]
        self._latency_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.frames_stepped = 0
        self.faults = 0
        self._switch_s = 0.0  # prompt re-cache time not yet charged to a frame

    # -- backends -----------------------------------------------------------------

    def _make_backend(self, name: str):
        """The step function of a backend; engines.make_backend falls back with a warning."""
        if name == "torch":
            return self.model.step
        from engines.registry import make_backend

        return make_backend(name, self.model, self.batch, device=self.device).step

    # -- inputs --------------------------------------------------------------------

    def _per_world(self, value, name: str, kind: type) -> list:
        """An int/str for every world, or a sequence of B of them."""
        if isinstance(value, kind) and not isinstance(value, bool):
            values = [value + b for b in range(self.batch)] if kind is int else [value] * self.batch
        else:
            values = list(value)
            if len(values) != self.batch:
                raise ValueError(f"{name} needs {self.batch} values (one per world), got {len(values)}")
        for v in values:
            if not isinstance(v, (kind, np.integer) if kind is int else kind) or isinstance(v, bool):
                raise TypeError(f"{name} values must be {kind.__name__}, got {type(v).__name__}")
        return [int(v) for v in values] if kind is int else values

    def _actions(self, action) -> torch.Tensor:
        """int / [B] ints in [0, num_actions) -> int64 [B] tensor, or a clear error."""
        a = np.asarray(action)
        if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"action must be an integer (or integer array), got {a.dtype} {action!r:.60}")
        want = () if self.single else (self.batch,)
        if a.shape != want and not (self.single and a.shape == (1,)):
            raise ValueError(f"action must have shape {want or 'scalar'} (batch {self.batch}), got {a.shape}")
        a = a.reshape(self.batch).astype(np.int64)
        if a.min() < 0 or a.max() >= self.num_actions:
            raise ValueError(f"action must be in [0, {self.num_actions - 1}] "
                             f"({', '.join(self.action_meanings)}), got {a.tolist()}")
        return torch.from_numpy(a).to(self.device)

    def _start_frames(self, start_frame, count: int) -> torch.Tensor | None:
        if start_frame is None:
            return None
        f = np.asarray(start_frame)
        R = self.cfg.tokenizer.image_size
        if f.ndim == 3:
            f = f[None].repeat(count, 0)
        if f.dtype != np.uint8 or f.shape != (count, R, R, 3):
            raise ValueError(f"start_frame must be uint8 [{R}, {R}, 3] or [{count}, {R}, {R}, 3], "
                             f"got {f.dtype} {list(f.shape)}")
        return torch.from_numpy(np.ascontiguousarray(f)).to(self.device)

    def _embed(self, prompts: Sequence[str]) -> list:
        return [self.text(p) for p in prompts]

    def _out(self, frames: np.ndarray) -> np.ndarray:
        return frames[0] if self.single else frames

    # -- worlds --------------------------------------------------------------------

    @torch.no_grad()
    def _fresh(self, seeds: list[int], prompts: list[str], start: torch.Tensor | None):
        """New worlds and their first frames: the start frame, or one generated from the prompt."""
        state = self.model.init_state(len(seeds), self._embed(prompts), seeds, first_frame=start)
        if start is not None:
            return state, start.cpu().numpy()
        noop = torch.zeros(len(seeds), dtype=torch.long, device=self.device)
        return state, self.model.step(state, noop, self.fixed_steps).frame.cpu().numpy()

    def reset(self, seed: int | Sequence[int] = 0, prompt: str | Sequence[str] = "",
              start_frame: np.ndarray | None = None) -> np.ndarray:
        """Fresh worlds. seed: int (world b gets seed + b) or one per world; prompt: one
        for all or one per world ("" = unconditional); start_frame: uint8 [H, W, 3] (all
        worlds) or [B, H, W, 3], else the first frame is generated from the prompt alone."""
        seeds = self._per_world(seed, "seed", int)
        self.prompts = self._per_world(prompt, "prompt", str)
        self.state, self.frames = self._fresh(seeds, self.prompts, self._start_frames(start_frame, self.batch))
        self.rewind_buffer.clear()
        self._push_rewind(force=True)
        if self.pacer is not None:
            self.pacer = Pacer(self.fps)
        return self._out(self.frames)

    def reset_worlds(self, worlds: Sequence[int], seeds: Sequence[int], prompts: Sequence[str] | None = None,
                     start_frames: np.ndarray | None = None) -> np.ndarray:
        """Reset some worlds of the batch in place (vector-env autoreset); the others go on.
        Returns the new worlds' first frames [len(worlds), H, W, 3]."""
        self._require_state()
        worlds = [int(w) for w in worlds]
        if any(not 0 <= w < self.batch for w in worlds) or len(set(worlds)) != len(worlds):
            raise ValueError(f"worlds must be distinct indices in [0, {self.batch}), got {worlds}")
        prompts = list(prompts) if prompts is not None else [self.prompts[w] for w in worlds]
        if len(seeds) != len(worlds) or len(prompts) != len(worlds):
            raise ValueError("reset_worlds needs one seed and one prompt per world")
        fresh, frames = self._fresh([int(s) for s in seeds], prompts, self._start_frames(start_frames, len(worlds)))
        for i, w in enumerate(worlds):
            self.state.copy_world(w, fresh, i, self.model.policy.layer_major)
            self.prompts[w] = prompts[i]
            self.frames[w] = frames[i]
        return frames

    def set_prompt(self, text: str, world: int | None = None) -> None:
        """Change the prompt live (all worlds, or one); the world continues, no reset.
        "" is unconditional; over-long prompts are truncated by the text encoder (a warning)."""
        self._require_state()
        if not isinstance(text, str):
            raise TypeError(f"prompt must be a str, got {type(text).__name__}")
        if world is None:
            self.prompts = [text] * self.batch
        elif not 0 <= world < self.batch:
            raise ValueError(f"world must be in [0, {self.batch}), got {world}")
        else:
            self.prompts[world] = text
        t0 = time.perf_counter()
        # the worlds whose prompt changed re-cache their window (WorldModel.recache); the
        # time it takes is charged to the next frame, so the frame budget sees the switch
        self.model.set_prompt(self.state, self._embed(self.prompts))
        self._switch_s += time.perf_counter() - t0

    def _require_state(self) -> None:
        if self.state is None:
            raise RuntimeError("call reset() before stepping the session")

    # -- stepping ------------------------------------------------------------------

    def advance(self, action) -> StepOutput:
        """One frame of every world with everything the step produced."""
        self._require_state()
        a = self._actions(action)
        steps = self.budget.steps if self.budget is not None else self.fixed_steps
        t0 = time.perf_counter()
        with torch.no_grad():
            out = self.backend(self.state, a, steps)
        reward, done = out.reward.float().cpu().numpy(), out.done_prob.float().cpu().numpy()
        latency = time.perf_counter() - t0 + self._switch_s
        self._switch_s = 0.0
        self.frames = out.frame.cpu().numpy()
        bad = ~(np.isfinite(reward) & np.isfinite(done))
        if bad.any():
            self._fault(np.flatnonzero(bad).tolist(), reward, done)
        self.frames_stepped += 1
        self._latency_ms.append(latency * 1e3)
        if self.budget is not None:
            self.budget.record(latency)
        if self.pacer is not None:
            self.pacer.wait()
        self._push_rewind()
        return StepOutput(self.frames, reward, done, latency * 1e3, steps)

    def _fault(self, worlds: list[int], reward: np.ndarray, done: np.ndarray) -> None:
        """Non-finite output: the step has already written it into the cache/memory.

        One world goes back to its newest rewind snapshot and raises FrameError. In a
        batch the others go on: the bad worlds restart as fresh worlds (a seed drawn from
        the fault count) and report reward 0, done 1, so an RL env ends their episodes.
        """
        self.faults += 1
        if self.single:
            _, snap = self.rewind_buffer.rewind(1)
            self.restore(snap)
            raise FrameError(f"a frame came out non-finite (fault #{self.faults}); "
                             f"the world went back to frame {self.frame_index}")
        warnings.warn(f"worlds {worlds} came out non-finite (fault #{self.faults}); they restart fresh",
                      RuntimeWarning, stacklevel=3)
        seeds = np.random.default_rng([self.faults, *worlds]).integers(0, 2**31, len(worlds)).tolist()
        self.reset_worlds(worlds, seeds)  # also writes their first frames into self.frames
        reward[worlds], done[worlds] = 0.0, 1.0

    def step(self, action) -> np.ndarray:
        """One frame: an action (int, or [B] ints) -> uint8 [H, W, 3] (or [B, H, W, 3])."""
        return self._out(self.advance(action).frames)

    @property
    def frame_index(self) -> int:
        return int(self.state.frame.max()) if self.state is not None else 0

    # -- save, load, rewind --------------------------------------------------------

    def snapshot(self) -> dict[str, torch.Tensor]:
        """The whole world (state + the frames on screen) as a dict of tensors."""
        self._require_state()
        snap = self.state.snapshot()
        snap["shown_frames"] = torch.from_numpy(self.frames.copy())
        return snap

    def restore(self, snap: dict[str, torch.Tensor]) -> np.ndarray:
        snap = dict(snap)
        frames = snap.pop("shown_frames").numpy().copy()
        self.state = self.model.restore({k: v.to(self.device) for k, v in snap.items()})
        self.frames = frames
        return self._out(self.frames)

    def save(self, path: str | Path) -> Path:
        """Write the world to a snapshot file (safetensors + JSON header, a few MB)."""
        return save_snapshot(path, self.snapshot(), self.checkpoint_hash, self.frame_index,
                             self.prompts[0], extra={"prompts": self.prompts, "batch": self.batch,
                                                     "policy": self.cfg.memory.policy})

    def load(self, path: str | Path) -> np.ndarray:
        """Continue a saved world. Anything wrong with the file raises SnapshotError
        and leaves this session exactly as it was."""
        live = self.state.snapshot() if self.state is not None else self.model.init_state(self.batch).snapshot()
        expected = {k: (tuple(v.shape), v.dtype) for k, v in live.items()}
        R = self.cfg.tokenizer.image_size
        expected["shown_frames"] = ((self.batch, R, R, 3), torch.uint8)
        tensors, header = load_snapshot(path, self.checkpoint_hash, expected)
        frames = self.restore(tensors)
        self.prompts = list(header.get("prompts", [header.get("prompt", "")] * self.batch))
        self.rewind_buffer.clear()
        self._push_rewind(force=True)
        return frames

    def _push_rewind(self, force: bool = False) -> None:
        if not self.single:
            return
        if force:
            self.rewind_buffer.push(self.frame_index, self.snapshot())
        else:
            self.rewind_buffer.maybe_push(self.frame_index, self.snapshot)

    def rewind(self, seconds: float = 2.0) -> np.ndarray:
        """Go back about `seconds` of play (kept every `rewind_every` frames, last few seconds)."""
        self._require_state()
        if not self.single:
            raise RuntimeError("rewind keeps one world's history; it is off for batched sessions")
        back = max(1, round(seconds * self.fps / self.rewind_buffer.every))
        back = min(back + 1, len(self.rewind_buffer))  # +1: the newest snapshot is ~now
        _, snap = self.rewind_buffer.rewind(back)
        return self.restore(snap)

    # -- stats ---------------------------------------------------------------------

    def stats(self) -> dict:
        """Frame index, latency percentiles over the last frames, budget and pacing figures."""
        ms = np.asarray(self._latency_ms) if self._latency_ms else np.zeros(1)
        out = {
            "frame_index": self.frame_index,
            "frames_stepped": self.frames_stepped,
            "batch": self.batch,
            "prompts": list(self.prompts),
            "policy": self.cfg.memory.policy,
            "steps": self.budget.steps if self.budget is not None else self.fixed_steps,
            "latency_ms": {q: float(np.percentile(ms, int(q[1:]))) for q in ("p50", "p95", "p99")},
            "model_fps": float(1e3 / ms.mean()) if ms.mean() > 0 else 0.0,
            "faults": self.faults,
        }
        if self.budget is not None:
            out.update(self.budget.stats())
        if self.pacer is not None:
            out["budget_misses"] = self.pacer.misses
            out["budget_miss_rate"] = self.pacer.miss_rate
        return out
