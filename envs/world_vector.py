"""B worlds of the model as one natively batched Gymnasium `VectorEnv`.

All B worlds step in one forward pass (one `Session(batch=B)`), which is what
makes imagination cheap: on CPU the batch amortises the per-step overhead.

    import envs  # registers the ids
    vec = gym.make_vec("EchoInfinity/World-v0", num_envs=32, vectorization_mode="vector_entry_point")
    obs, info = vec.reset(seed=0, options={"prompt": ["a desert at noon", ...]})   # or one str
    obs, reward, terminated, truncated, info = vec.step(actions)                   # actions int [32]

Same spaces, options and info keys as `WorldEnv` (batched: `single_observation_space`
is the teacher's). Per-env seeds: `reset(seed=s)` gives env i the seed s + i
(as `SyncVectorEnv` does), or pass one seed per env; env i then draws exactly
what a single `WorldEnv` reset with that seed draws, so the vector env equals
B single envs (up to the float rounding of batched matmuls).

Autoreset (`autoreset_mode`, one of Gymnasium's `AutoresetMode`s or its value; `metadata` says which):
- NEXT_STEP (default, as SyncVectorEnv): the step after an env's episode ended, that
  env's action is ignored and it returns the first frame of its next episode, with reward 0
  and terminated = truncated = False;
- SAME_STEP: the step that ends an episode already returns the next episode's first
  frame; the last frame is in `info["final_obs"][i]` and that step's info in
  `info["final_info"]` (masks `_final_obs`, `_final_info`), as SyncVectorEnv in that mode
  (Stable-Baselines3 expects this: `envs.sb3`).
Either way only the ended worlds restart (`Session.reset_worlds`: the others go on). A new
episode draws from that env's own generator, keeps the prompt that env was given at the
last `reset()` (prompts persist across autoresets, start frames and snapshots do not) and
starts as `start` says.

Truncation: `max_episode_steps` (1000 from the registration, as Teacher-v0);
`gym.make_vec` passes it here. None: no truncation.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from .world_env import DONE_THRESHOLD, EpisodeStarts, HumanWindow, check_start, make_session, parse_options, tile


class WorldVectorEnv(gym.vector.VectorEnv):
    """`num_envs` worlds stepped together; constructor arguments as `WorldEnv`, plus
    `num_envs` and `max_episode_steps`."""

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 20,
                "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, max_episode_steps: int | None = 1000, render_mode: str | None = None,
                 checkpoint=None, steps: int | None = None, policy: str | None = None, text_encoder: str = "minilm",
                 device: str = "cpu", prompt: str = "", start: str = "generated",
                 done_threshold: float = DONE_THRESHOLD, backend: str = "torch",
                 autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP):
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        if max_episode_steps is not None and (not isinstance(max_episode_steps, int) or max_episode_steps < 1):
            raise ValueError(f"max_episode_steps must be None or an int >= 1, got {max_episode_steps!r}")
        modes = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)
        if autoreset_mode not in modes + tuple(m.value for m in modes):
            raise ValueError(f"autoreset_mode must be AutoresetMode.NEXT_STEP or .SAME_STEP (or "
                             f"{[m.value for m in modes]}), got {autoreset_mode!r}")
        self.metadata = {**self.metadata, "autoreset_mode": AutoresetMode(autoreset_mode)}
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unknown render_mode {render_mode!r}; choose one of {self.metadata['render_modes']}")
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.render_mode = render_mode
        self.session = make_session(checkpoint, num_envs, steps, policy, text_encoder, device, backend)
        self.resolution = R = self.session.cfg.tokenizer.image_size
        self.motion = self.session.cfg.game.motion  # as WorldEnv: the teacher starts move this way
        self.start = check_start(start, R)
        self.default_prompt = prompt
        self.done_threshold = float(done_threshold)
        self.single_observation_space = spaces.Box(0, 255, (R, R, 3), np.uint8)
        self.single_action_space = spaces.Discrete(self.session.num_actions)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._starts = EpisodeStarts(self.start, R, self.session.cfg.game)
        self._window = HumanWindow(f"Echo-Infinity world model x{num_envs}")
        self._rngs: list[np.random.Generator | None] = [None] * num_envs  # one generator per env
        self._prompts = [prompt] * num_envs  # each env's episode prompt (kept by autoreset)
        self._episode_steps = np.zeros(num_envs, np.int64)
        self._autoreset = np.zeros(num_envs, bool)  # envs whose episode ended last step
        self._frames: np.ndarray | None = None  # uint8 [B, R, R, 3]

    # --- Gymnasium API -------------------------------------------------------------
    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None):
        self._require_open()
        seeds = self._seeds(seed)
        super().reset(seed=seeds[0] if isinstance(seed, (int, np.integer)) else None)
        opts = parse_options(options, self.num_envs, self.resolution)
        for i, s in enumerate(seeds):  # env i's generator: seeded here, or going on from its last episode
            if s is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(s)
        t0 = time.perf_counter()
        if opts.snapshot is not None:
            frames = self.session.load(opts.snapshot)
            self._prompts = list(self.session.prompts)
        else:
            self._prompts = opts.prompt if opts.prompt is not None else [self.default_prompt] * self.num_envs
            draws = [self._starts.draw(self._rngs[i], seeds[i], self._prompts[i], opts.start_frame is None)
                     for i in range(self.num_envs)]
            world_seeds, prompts, firsts = zip(*draws)
            start = opts.start_frame if opts.start_frame is not None else (
                np.stack(firsts) if self.start == "teacher" else None)
            frames = self.session.reset(seed=list(world_seeds), prompt=list(prompts), start_frame=start)
        self._frames = frames.copy()
        self._episode_steps[:] = 0
        self._autoreset[:] = False
        info = self._info((time.perf_counter() - t0) * 1e3, np.zeros(self.num_envs, np.float32))
        if self.render_mode == "human":
            self.render()
        return self._frames.copy(), info

    def step(self, actions):
        self._require_open()
        if self._frames is None:
            raise RuntimeError("call reset() before step()")
        a = self._check_actions(actions)
        out = self.session.advance(a)  # all B worlds, one forward pass
        frames = out.frames.copy()
        reward = out.reward.astype(np.float64)
        done_prob = out.done.astype(np.float32)
        terminated = done_prob > self.done_threshold
        self._episode_steps += 1
        truncated = (self._episode_steps >= self.max_episode_steps if self.max_episode_steps is not None
                     else np.zeros(self.num_envs, bool))
        latency = out.latency_ms
        same_step = self.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        if same_step:  # the worlds that end now restart in this step; their last frame goes in info
            ended = np.flatnonzero(terminated | truncated)
            final_obs, final_info = frames[ended].copy(), self._info(latency, done_prob)
        else:  # NEXT_STEP: the worlds that ended last step start their next episode now
            ended = np.flatnonzero(self._autoreset)
            reward[ended], done_prob[ended] = 0.0, 0.0
            terminated[ended], truncated[ended] = False, False
            self._autoreset = terminated | truncated
        if len(ended):
            t0 = time.perf_counter()
            frames[ended] = self._restart(ended)
            latency += (time.perf_counter() - t0) * 1e3
            self._episode_steps[ended] = 0
        self._frames = frames
        info = self._info(latency, done_prob)
        if same_step:
            for j, i in enumerate(ended):  # Gymnasium's layout: per-env objects + "_key" masks
                env_info = {k: v[i] for k, v in final_info.items() if not k.startswith("_")}
                info = self._add_info(info, {"final_obs": final_obs[j], "final_info": env_info}, int(i))
        if self.render_mode == "human":
            self.render()
        return frames.copy(), reward, terminated, truncated, info

    def render(self):
        if self._frames is None:
            raise RuntimeError("call reset() before render()")
        if self.render_mode == "human":
            self._window.show(tile(self._frames))
            return None
        if self.render_mode == "rgb_array":
            return tuple(f.copy() for f in self._frames)  # as SyncVectorEnv: one frame per env
        return None

    def close_extras(self, **kwargs):
        self._window.close()
        self.session = None  # frees the caches; VectorEnv.close() makes a second close a no-op

    # --- the worlds ----------------------------------------------------------------
    def get_action_meanings(self) -> list[str]:
        return list(self.session.action_meanings)

    def set_prompt(self, text: str, env: int | None = None) -> None:
        """Change the prompt mid-episode, of all envs or of env `env` (no reset). Autoresets
        go back to the prompt each env was given at reset()."""
        self._require_open()
        if self._frames is None:
            raise RuntimeError("call reset() before set_prompt()")
        if env is not None and (not isinstance(env, (int, np.integer)) or not 0 <= env < self.num_envs):
            raise ValueError(f"env must be None (all) or an int in [0, {self.num_envs}), got {env!r}")
        self.session.set_prompt(text, None if env is None else int(env))

    @property
    def prompts(self) -> list[str]:
        """The prompt each world follows now."""
        return list(self.session.prompts)

    def save(self, path: str | os.PathLike) -> Path:
        """Write all worlds to one snapshot; `reset(options={"snapshot": path})` resumes them."""
        self._require_open()
        return self.session.save(path)

    def _restart(self, worlds: np.ndarray) -> np.ndarray:
        """New episodes for `worlds` (from each env's generator) -> their first frames."""
        draws = [self._starts.draw(self._rngs[w], None, self._prompts[w]) for w in worlds]
        world_seeds, prompts, firsts = zip(*draws)
        start = np.stack(firsts) if self.start == "teacher" else None
        return self.session.reset_worlds(worlds.tolist(), list(world_seeds), list(prompts), start)

    def _seeds(self, seed) -> list[int | None]:
        B = self.num_envs
        if seed is None:
            return [None] * B
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
            return [int(seed) + i for i in range(B)]
        if isinstance(seed, (Sequence, np.ndarray)) and not isinstance(seed, str):
            seeds = list(seed)
            if len(seeds) != B:
                raise ValueError(f"seed must be an int (env i gets seed + i) or a list of {B} (one per env), "
                                 f"got {len(seeds)} seeds")
            for s in seeds:
                if s is not None and (not isinstance(s, (int, np.integer)) or isinstance(s, (bool, np.bool_))):
                    raise TypeError(f"seed entries must be int or None, got {type(s).__name__}")
            return [None if s is None else int(s) for s in seeds]
        raise TypeError(f"seed must be None, an int or a list of {B} ints, got {type(seed).__name__}")

    def _check_actions(self, actions) -> np.ndarray:
        B, meanings = self.num_envs, self.session.action_meanings
        valid = f"{B} ints in [0, {len(meanings)}) (" + ", ".join(f"{i} {m}" for i, m in enumerate(meanings)) + ")"
        a = np.asarray(actions)
        if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"actions must be {valid}; got dtype {a.dtype}")
        if a.shape != (B,):
            raise ValueError(f"actions must have shape ({B},), one per env ({valid}); got shape {a.shape}")
        if a.min() < 0 or a.max() >= len(meanings):
            raise ValueError(f"actions must be {valid}; got {a.tolist()}")
        return a.astype(np.int64)

    def _info(self, latency_ms: float, done_prob: np.ndarray) -> dict[str, Any]:
        B = self.num_envs
        s = self.session
        info = {
            "frame": s.state.frame.cpu().numpy().astype(np.int64),
            "latency_ms": np.full(B, latency_ms, np.float64),
            "steps": np.full(B, s.fixed_steps, np.int64),
            "prompt": np.array(s.prompts, dtype=object),
            "done_prob": done_prob,
        }
        mask = np.ones(B, bool)  # Gymnasium's vector-info convention: "_key" marks the envs that have key
        info.update({f"_{k}": mask.copy() for k in list(info)})
        return info

    def _require_open(self) -> None:
        if self.closed:
            raise RuntimeError("this env is closed")
