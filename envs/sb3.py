"""Stable-Baselines3 on the Echo-Infinity envs: a Gymnasium vector env as SB3's `VecEnv`.

    from stable_baselines3 import PPO
    from envs.sb3 import make_sb3_vec_env
    venv = make_sb3_vec_env("EchoInfinity/World-v0", n_envs=8, start="teacher")  # natively batched
    PPO("CnnPolicy", venv).learn(100_000)

SB3 restarts an env in the step that ends its episode and hands the last obs over in
`info["terminal_observation"]`, with `info["TimeLimit.truncated"]` where only the time
limit ended it (its value then bootstraps): Gymnasium's SAME_STEP autoreset, which
World-v0's vector env and `SyncVectorEnv` (every other id) both offer. Keyword arguments go
to the env (World-v0: `checkpoint`, `start`, `max_episode_steps`, ...; Teacher-v0: `motion`, ...).

Needs the `rl` extra (`pip install -e '.[rl]'`). SB3 saves its models with pickle; keep the
policy's weights as safetensors instead (`demos/sb3_ppo.py` does), which loading cannot run.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

try:
    from stable_baselines3.common.vec_env import VecEnv
except ImportError as e:  # an optional extra: say how to get it
    raise ImportError("envs.sb3 needs Stable-Baselines3: pip install -e '.[rl]' "
                      "(or pip install 'stable-baselines3>=2.4')") from e


def make_sb3_vec_env(env_id: str, n_envs: int = 8, **env_kwargs: Any) -> SB3VecEnv:
    """`n_envs` copies of `env_id` as one SB3 `VecEnv` (World-v0: one batched model session)."""
    if not isinstance(n_envs, int) or isinstance(n_envs, bool) or n_envs < 1:
        raise ValueError(f"n_envs must be an int >= 1, got {n_envs!r}")
    if gym.spec(env_id).vector_entry_point is not None:
        vec = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="vector_entry_point",
                           autoreset_mode=AutoresetMode.SAME_STEP, **env_kwargs)
    else:
        vec = gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **env_kwargs) for _ in range(n_envs)],
                                       autoreset_mode=AutoresetMode.SAME_STEP)
    return SB3VecEnv(vec)


class SB3VecEnv(VecEnv):
    """A Gymnasium `VectorEnv` in SAME_STEP autoreset mode, seen through SB3's `VecEnv` API."""

    def __init__(self, vec: gym.vector.VectorEnv):
        if vec.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
            raise ValueError("SB3 needs Gymnasium's SAME_STEP autoreset; got "
                             f"{vec.metadata.get('autoreset_mode')} (make_sb3_vec_env sets it)")
        self.vec = vec
        self._actions: np.ndarray | None = None
        super().__init__(vec.num_envs, vec.single_observation_space, vec.single_action_space)

    def reset(self) -> np.ndarray:
        if any(self._options):
            raise NotImplementedError("per-env reset options are not passed on; reset the Gymnasium env itself")
        seeds = None if all(s is None for s in self._seeds) else list(self._seeds)
        obs, infos = self.vec.reset(seed=seeds)
        self.reset_infos = _split(infos, self.num_envs)
        self._reset_seeds()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, reward, terminated, truncated, infos = self.vec.step(self._actions)
        dones = terminated | truncated
        out = _split(infos, self.num_envs)
        for i in np.flatnonzero(dones):
            out[i]["terminal_observation"] = infos["final_obs"][i]
            out[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, reward.astype(np.float32), dones, out

    def close(self) -> None:
        self.vec.close()

    # The vector env is one object: attributes and methods are its own, the same for every index.
    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.vec, attr_name, None)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.vec, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        return [getattr(self.vec, method_name)(*method_args, **method_kwargs)] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._get_indices(indices))

    def _get_indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)


def _split(infos: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Gymnasium's vector info (arrays + "_key" masks) -> SB3's one dict per env."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, value in infos.items():
        if key.startswith("_") or key in ("final_obs", "final_info"):
            continue
        mask = infos.get(f"_{key}", np.ones(n, bool))
        parts = _split(value, n) if isinstance(value, dict) else None  # nested infos keep their own masks
        for i in np.flatnonzero(mask):
            out[i][key] = parts[i] if parts is not None else value[i]
    return out
