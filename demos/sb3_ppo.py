"""Stable-Baselines3's PPO in imagination vs on the real game, scored in the real game.

The library's own PPO, unchanged apart from the env id: `PPO("CnnPolicy", venv)` with the
RL Zoo's Atari settings (8 envs x 128 steps, 4 epochs of 256-sample minibatches, learning
rate 2.5e-4 and clip 0.1 decayed linearly, entropy 0.01), trained for `--total-steps` env
steps in each of `--env-ids` (through `envs.sb3`), then played for `--eval-episodes` episodes
of the real game with `demos.ppo`'s scoring (the same seeds as its policies and a random one).

    python -m demos.sb3_ppo --total-steps 100352 --out runs/sb3/results.json
    python -m demos.sb3_ppo --env-ids EchoInfinity/World-v0 --world-max-steps 1000 --total-steps 100352

Needs the `rl` extra. The trained policies are kept as safetensors
(`sb3_policy_<name>.safetensors`, `model.policy.state_dict()`), not SB3's pickled zip.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_model

from demos import ppo


def parse_args(argv: list[str] | None = None) -> ppo.Args:
    p = argparse.ArgumentParser(prog="python -m demos.sb3_ppo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--env-ids", nargs="+", default=None,
                   help="envs to train in (default: World-v0 and the checkpoint's real game)")
    p.add_argument("--total-steps", type=int, default=100_352, help="env steps per training run")
    p.add_argument("--checkpoint", default=None, help="World-v0: model directory (None: checkpoints/tiny)")
    p.add_argument("--text-encoder", default="minilm", choices=["minilm", "hash"], help="World-v0: prompt encoder")
    p.add_argument("--world-max-steps", type=int, default=ppo.Args.world_max_steps,
                   help="World-v0: steps before a dream episode restarts from a new real frame")
    p.add_argument("--num-envs", type=int, default=8, help="parallel envs per training run")
    p.add_argument("--eval-episodes", type=int, default=10, help="real-game episodes per evaluated policy")
    p.add_argument("--eval-max-steps", type=int, default=1000, help="steps per evaluation episode")
    p.add_argument("--seed", type=int, default=1, help="seed of SB3, torch and the envs")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("runs/sb3/results.json"), help="results JSON (policies beside it)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    a = p.parse_args(argv)
    if a.total_steps < 1 or a.num_envs < 1 or a.world_max_steps < 1:
        p.error("--total-steps, --num-envs and --world-max-steps must be >= 1")
    return replace(ppo.Args(), env_ids=a.env_ids, total_steps=a.total_steps, checkpoint=a.checkpoint,
                   text_encoder=a.text_encoder, world_max_steps=a.world_max_steps, num_envs=a.num_envs,
                   eval_episodes=a.eval_episodes, eval_max_steps=a.eval_max_steps, seed=a.seed,
                   threads=a.threads, out=a.out, no_progress=a.no_progress)


def make_venv(args: ppo.Args, env_id: str):
    """The training envs `demos.ppo` makes, autoresetting as SB3 expects, seen as an SB3 `VecEnv`."""
    from gymnasium.vector import AutoresetMode
    from stable_baselines3.common.vec_env import VecMonitor

    from envs.sb3 import SB3VecEnv

    venv = VecMonitor(SB3VecEnv(ppo.make_train_envs(args, env_id, AutoresetMode.SAME_STEP)))
    venv.seed(args.seed)
    return venv


def train(args: ppo.Args, env_id: str):
    from stable_baselines3 import PPO
    from stable_baselines3.common.utils import LinearSchedule

    venv = make_venv(args, env_id)
    model = PPO("CnnPolicy", venv, n_steps=128, batch_size=256, n_epochs=4,
                learning_rate=LinearSchedule(2.5e-4, 0.0, 1.0), clip_range=LinearSchedule(0.1, 0.0, 1.0),
                ent_coef=0.01, vf_coef=0.5, seed=args.seed, device="cpu", verbose=0)
    t0 = time.monotonic()
    model.learn(args.total_steps, progress_bar=False)
    returns = [ep["r"] for ep in model.ep_info_buffer]
    stats = {"env_steps": int(model.num_timesteps), "seconds": round(time.monotonic() - t0, 1),
             "return_mean_last_20": float(np.mean(returns[-20:])) if returns else None}
    venv.close()
    return model, stats


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    n_actions = ppo.make_teacher(args).action_space.n
    results = {"random": ppo.evaluate(lambda obs: int(rng.integers(n_actions)), args, "random")}
    for env_id in args.env_ids or [ppo.WORLD_ID, ppo.real_id(args)]:
        model, stats = train(args, env_id)
        name = env_id.split("/")[-1]
        save_model(model.policy, str(args.out.parent / f"sb3_policy_{name}.safetensors"))  # shared layers once
        act = lambda obs, m=model: int(m.predict(obs, deterministic=False)[0])  # noqa: E731 - sample, as trained
        results[env_id] = {**ppo.evaluate(act, args, name), "train": stats}
    return ppo.write_results(args, results, "stable-baselines3")


if __name__ == "__main__":
    main()
