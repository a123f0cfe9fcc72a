"""PPO in imagination vs PPO on the real game: does the world model teach an agent?

A cleanrl-style single file (cleanrl's `ppo_atari.py`, read top to bottom):
train one PPO policy per `--env-ids` entry for the same wall-clock budget
(`--minutes`), then play every policy, and a random one, in the real game of the
checkpoint (its `game.env`: the teacher, or Crafter) and score each episode: the
teacher's gems collected, or the Crafter achievements unlocked (with Crafter's own
score over them, the geometric mean of the success rates, Hafner 2021):

- `EchoInfinity/World-v0`: trained entirely inside the world model (the natively
  batched vector env: all worlds in one forward pass), never seeing the teacher's
  dynamics: each dream starts from a real first frame and is cut after
  `--world-max-steps` (32) steps, before it drifts far from the real game;
- `EchoInfinity/Teacher-v0`: trained on the teacher itself (`SyncVectorEnv`);
- random: uniform actions, the floor.

Both envs share spaces (64x64 RGB, six actions; a Crafter checkpoint's World-v0 and
`EchoInfinity/Crafter-v0` share Crafter's 17), so a policy moves from one to the
other unchanged. The teacher (training and evaluation) moves the way the
checkpoint's frames move (its `game.motion`: smooth, or a tile a move), so all
three play the same game. Results go to `--out` (JSON) with the trained policies
beside it (`policy_<name>.safetensors`: plain tensors, loading runs no code).

    python -m demos.ppo --checkpoint checkpoints/tiny --total-steps 100352 --minutes 60 --out runs/ppo/results.json
    python -m demos.ppo --total-steps 100352 --curve-every 20480 --out runs/ppo/curve.json   # + curve.png
    python -m demos.ppo --checkpoint /tmp/ckpt --text-encoder hash --minutes 0.5   # smoke run
    python -m demos.ppo --checkpoint checkpoints/crafter-tiny --total-steps 100000 --out runs/ppo/crafter.json
    python -m demos.ppo --policies runs/ppo/policy_World-v0.safetensors --eval-episodes 100 --out runs/ppo/replay.json

Both vector envs autoreset in NEXT_STEP mode: the step after an episode ends
only restarts that env (its action is ignored, its reward is 0), so that
transition is masked out of the loss (`valid` below). A time limit is not an end
of the game: there the value of the episode's last frame bootstraps the return
(`gae`). Stable-Baselines3's PPO on the same envs: `demos/sb3_ppo.py`.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.distributions.categorical import Categorical
from tqdm import tqdm

import envs  # registers the EchoInfinity ids

WORLD_ID, TEACHER_ID, CRAFTER_ID = envs.WORLD_ID, envs.TEACHER_ID, envs.CRAFTER_ID


@dataclass
class Args:
    env_ids: list[str] | None = field(default=None, metadata={
        "help": "envs to train in, one policy each, evaluated in the real game (default: World-v0 and the "
                "checkpoint's real game, Teacher-v0 or Crafter-v0)"})
    minutes: float = field(default=30.0, metadata={"help": "wall-clock training budget per env id"})
    total_steps: int = field(default=10**9, metadata={"help": "cap on env steps per training run"})
    checkpoint: str | None = field(default=None,
                                   metadata={"help": "World-v0: model directory (None: the shipped checkpoints/tiny); "
                                                     "the teacher moves as its game.motion says"})
    text_encoder: str = field(default="minilm", metadata={"help": "World-v0: prompt encoder ('hash': tests)",
                                                          "choices": ["minilm", "hash"]})
    world_start: str = field(default="teacher", metadata={"help": "World-v0: each episode's first frame from",
                                                          "choices": ["teacher", "generated"]})
    world_prompt: str = field(default="", metadata={"help": "World-v0: prompt ('' + teacher start: its caption)"})
    denoising_steps: int | None = field(default=None, metadata={"help": "World-v0: denoising steps per frame"})
    world_max_steps: int = field(default=32, metadata={
        "help": "World-v0: steps before a dream episode is cut off and starts again from a new real frame "
                "(the value bootstraps across the cut). Short dreams stay near the real game: DIAMOND "
                "imagines 15 steps; here 64 taught a policy 3.7x the real gems of 1,000, and 32 taught "
                "1.2x those of 64 over three seeds (docs/RESULTS.md)"})
    num_envs: int = field(default=8, metadata={"help": "parallel envs per training run"})
    num_steps: int = field(default=128, metadata={"help": "steps per env in each rollout"})
    learning_rate: float = field(default=2.5e-4, metadata={"help": "Adam step size, annealed to 0 over the budget"})
    gamma: float = field(default=0.99, metadata={"help": "discount"})
    gae_lambda: float = field(default=0.95, metadata={"help": "GAE lambda"})
    num_minibatches: int = field(default=4, metadata={"help": "minibatches per update epoch"})
    update_epochs: int = field(default=4, metadata={"help": "epochs over each rollout"})
    clip_coef: float = field(default=0.1, metadata={"help": "PPO ratio clip"})
    ent_coef: float = field(default=0.01, metadata={"help": "entropy bonus"})
    vf_coef: float = field(default=0.5, metadata={"help": "value loss weight"})
    max_grad_norm: float = field(default=0.5, metadata={"help": "gradient clip"})
    eval_episodes: int = field(default=10, metadata={"help": "teacher episodes per evaluated policy"})
    policies: list[Path] | None = field(default=None, metadata={
        "help": "train nothing: play these saved policies (policy_<env>.safetensors of earlier runs) in the "
                "real game, --eval-episodes each, beside the random policy"})
    curve_every: int = field(default=0, metadata={
        "help": "also play the policy in the real game every this many env steps of training (0: only at the "
                "end); the curve goes into the JSON and a PNG beside it, and its time is not training time"})
    curve_episodes: int = field(default=5, metadata={"help": "real-game episodes per point of the curve"})
    eval_max_steps: int = field(default=1000, metadata={"help": "steps per evaluation episode (Teacher-v0: 1000; "
                                                                 "Crafter's episodes end when the player dies)"})
    seed: int = field(default=1, metadata={"help": "seed of torch, numpy and the envs"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads"})
    device: str = field(default="cpu", metadata={"help": "torch device of the policy and the world model"})
    out: Path = field(default=Path("runs/ppo/results.json"), metadata={"help": "results JSON (policies beside it)"})
    no_progress: bool = field(default=False, metadata={"help": "hide the progress bars"})


def parse_args(argv: list[str] | None = None) -> Args:
    p = argparse.ArgumentParser(prog="python -m demos.ppo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in fields(Args):
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if callable(f.default_factory) else f.default
        if f.type == "bool":
            p.add_argument(flag, action="store_true", help=f.metadata["help"])
        elif f.name in ("env_ids", "policies"):
            p.add_argument(flag, nargs="+", type=Path if f.name == "policies" else str, default=default,
                           help=f.metadata["help"])
        else:
            kind = {"float": float, "int": int, "Path": Path}.get(f.type.split(" |")[0], str)
            p.add_argument(flag, type=kind, default=default, help=f.metadata["help"],
                           choices=f.metadata.get("choices"))
    return Args(**vars(p.parse_args(argv)))


# -- the agent: cleanrl's Nature-CNN actor-critic ------------------------------------------


def layer_init(layer: nn.Module, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Module:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class Agent(nn.Module):
    def __init__(self, obs_shape: tuple[int, int, int], n_actions: int):
        super().__init__()
        self.network = nn.Sequential(
            layer_init(nn.Conv2d(3, 32, 8, stride=4)), nn.ReLU(),  # 64 -> 15
            layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),  # 15 -> 6
            layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(),  # 6 -> 4
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.network(torch.zeros(1, 3, *obs_shape[:2])).shape[1]
        self.network.append(layer_init(nn.Linear(flat, 512)))
        self.network.append(nn.ReLU())
        self.actor = layer_init(nn.Linear(512, n_actions), std=0.01)
        self.critic = layer_init(nn.Linear(512, 1), std=1.0)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.network(obs.permute(0, 3, 1, 2).float() / 255.0)  # uint8 [B, H, W, 3] -> [B, 512]

    def get_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.features(obs)).flatten()

    def get_action_and_value(self, obs: torch.Tensor, action: torch.Tensor | None = None):
        hidden = self.features(obs)
        dist = Categorical(logits=self.actor(hidden))
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), self.critic(hidden).flatten()


# -- envs ------------------------------------------------------------------------------------


def real_game(args: Args):
    """The checkpoint's game config (the shipped one when --checkpoint is not given; the smooth
    teacher without one): which real game the policies are scored in, and how it moves."""
    from demos.source import DEFAULT_CHECKPOINT, checkpoint_game, checkpoint_problem
    from world.config import GameConfig

    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    return GameConfig() if checkpoint_problem(checkpoint) else checkpoint_game(checkpoint)


def real_id(args: Args) -> str:
    return CRAFTER_ID if real_game(args).env == "crafter" else TEACHER_ID


def make_teacher(args: Args, **kwargs) -> gym.Env:
    """The real game: the teacher in the checkpoint's motion mode, or Crafter."""
    game = real_game(args)
    if game.env == "crafter":
        return gym.make(CRAFTER_ID, **kwargs)
    return gym.make(TEACHER_ID, motion=game.motion, **kwargs)


def make_train_envs(args: Args, env_id: str,
                    autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP) -> gym.vector.VectorEnv:
    """`args.num_envs` training envs (SAME_STEP autoreset: what Stable-Baselines3 needs, `envs.sb3`)."""
    if env_id == WORLD_ID:  # natively batched: one forward pass for all worlds
        return gym.make_vec(WORLD_ID, num_envs=args.num_envs, vectorization_mode="vector_entry_point",
                            checkpoint=args.checkpoint, text_encoder=args.text_encoder, start=args.world_start,
                            prompt=args.world_prompt, steps=args.denoising_steps, device=args.device,
                            max_episode_steps=args.world_max_steps, autoreset_mode=autoreset_mode)
    if env_id == real_id(args):  # in the checkpoint's motion mode, as World-v0 and the evaluation
        make = lambda: make_teacher(args)  # noqa: E731
    else:
        make = lambda: gym.make(env_id)  # noqa: E731
    return gym.vector.SyncVectorEnv([make for _ in range(args.num_envs)], autoreset_mode=autoreset_mode)


# -- training ----------------------------------------------------------------------------------


def masked_mean(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mean over the real transitions (w = 1), skipping autoreset steps (w = 0)."""
    return (x * w).sum() / w.sum()


def gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, terminals: torch.Tensor,
        next_value: torch.Tensor, next_done: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates [T, N] of a rollout (all inputs [T, N], next_* [N]).

    dones[t]: obs[t] only restarts an env (the step before ended its episode); terminals[t]:
    step t ended its episode for good. Any end cuts the GAE chain, but only a true end drops the
    next value: at a time limit obs[t + 1] is the episode's last obs (NEXT_STEP autoreset), and
    its value stands in for the steps the cut took away.
    """
    T = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        continues = 1.0 - (next_done if t == T - 1 else dones[t + 1])
        nextvalues = next_value if t == T - 1 else values[t + 1]
        delta = rewards[t] + gamma * nextvalues * (1.0 - terminals[t]) - values[t]
        lastgaelam = delta + gamma * lam * continues * lastgaelam
        advantages[t] = lastgaelam
    return advantages


def train(args: Args, env_id: str) -> tuple[Agent, dict]:
    """PPO in `env_id` until the time budget (or `total_steps`) runs out."""
    device = torch.device(args.device)
    vec = make_train_envs(args, env_id)
    assert vec.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP) == gym.vector.AutoresetMode.NEXT_STEP
    obs_shape, n_actions = vec.single_observation_space.shape, int(vec.single_action_space.n)
    agent = Agent(obs_shape, n_actions).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    N, T = args.num_envs, args.num_steps
    batch_size = N * T
    minibatch_size = max(1, batch_size // args.num_minibatches)

    obs = torch.zeros((T, N, *obs_shape), dtype=torch.uint8, device=device)
    actions = torch.zeros((T, N), dtype=torch.long, device=device)
    logprobs = torch.zeros((T, N), device=device)
    rewards = torch.zeros((T, N), device=device)
    dones = torch.zeros((T, N), device=device)  # obs[t] ends an episode: step t only resets
    terminals = torch.zeros((T, N), device=device)  # step t ended its episode for good (no bootstrap)
    values = torch.zeros((T, N), device=device)

    budget = args.minutes * 60.0
    t_start = time.monotonic()
    global_step, updates = 0, 0
    episode_returns, running_return = [], np.zeros(N)
    next_obs, _ = vec.reset(seed=args.seed)
    next_obs = torch.as_tensor(next_obs, device=device)
    next_done = torch.zeros(N, device=device)
    bar = tqdm(total=round(budget), desc=f"PPO in {env_id}", disable=args.no_progress,
               bar_format="{l_bar}{bar}| {n}/{total} s [{postfix}]")
    last_update_s = 0.0  # stop when the next update would end past the budget (the first always runs)
    curve, next_point = [], args.curve_every
    while global_step < args.total_steps and (updates == 0 or time.monotonic() - t_start + last_update_s < budget):
        t_update = time.monotonic()
        frac = min(1.0, (t_update - t_start) / budget)
        optimizer.param_groups[0]["lr"] = args.learning_rate * (1.0 - frac)

        # 1. rollout: T steps of N envs with the current policy
        for t in range(T):
            obs[t], dones[t] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
            actions[t], logprobs[t], values[t] = action, logprob, value
            o, r, terminated, truncated, _ = vec.step(action.cpu().numpy())
            ended = np.logical_or(terminated, truncated)
            running_return += r
            episode_returns += running_return[ended].tolist()
            running_return[ended] = 0.0
            rewards[t] = torch.as_tensor(r, dtype=torch.float32, device=device)
            terminals[t] = torch.as_tensor(terminated, dtype=torch.float32, device=device)
            next_obs = torch.as_tensor(o, device=device)
            next_done = torch.as_tensor(ended, dtype=torch.float32, device=device)
            global_step += N

        # 2. advantages (GAE); a step whose obs ended an episode is a reset, not a transition
        with torch.no_grad():
            advantages = gae(rewards, values, dones, terminals, agent.get_value(next_obs), next_done,
                             args.gamma, args.gae_lambda)
            returns = advantages + values
        valid = 1.0 - dones  # [T, N]

        # 3. PPO update over shuffled minibatches
        b_obs, b_actions, b_logprobs = obs.flatten(0, 1), actions.flatten(), logprobs.flatten()
        b_adv, b_returns, b_valid = advantages.flatten(), returns.flatten(), valid.flatten()
        ok = b_valid.bool()
        if ok.sum() > 1:
            b_adv = (b_adv - b_adv[ok].mean()) / (b_adv[ok].std() + 1e-8)
        for _ in range(args.update_epochs):
            for mb in torch.randperm(batch_size, device=device).split(minibatch_size):
                w = b_valid[mb]
                if w.sum() == 0:
                    continue
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb], b_actions[mb])
                ratio = (newlogprob - b_logprobs[mb]).exp()
                pg_loss = torch.max(-b_adv[mb] * ratio,
                                    -b_adv[mb] * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef))
                v_loss = 0.5 * (newvalue - b_returns[mb]) ** 2
                loss = (masked_mean(pg_loss, w) - args.ent_coef * masked_mean(entropy, w)
                        + args.vf_coef * masked_mean(v_loss, w))
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
        updates += 1
        last_update_s = time.monotonic() - t_update
        if args.curve_every and (global_step >= next_point or global_step >= args.total_steps):
            t_eval = time.monotonic()
            point = evaluate(policy_actor(agent, device, args.seed), args, f"{env_id} at {global_step}",
                             episodes=args.curve_episodes)
            curve.append([global_step, point.get("gems_mean", point.get("achievements_mean"))])
            next_point += args.curve_every
            t_start += time.monotonic() - t_eval  # the curve's games are not training time
        recent = episode_returns[-20:]
        bar.n = min(round(time.monotonic() - t_start), bar.total)
        bar.set_postfix(steps=global_step, episodes=len(episode_returns),
                        ret=f"{np.mean(recent):.2f}" if recent else "-")
    bar.close()
    vec.close()
    stats = {"env_steps": global_step, "updates": updates, "seconds": round(time.monotonic() - t_start, 1),
             "episodes": len(episode_returns),
             "return_mean_last_20": float(np.mean(episode_returns[-20:])) if episode_returns else None}
    if curve:
        stats["curve"] = curve  # [env steps, real-game score per episode]
    return agent, stats


# -- evaluation in the teacher ----------------------------------------------------------------


def evaluate(act, args: Args, label: str, episodes: int | None = None) -> dict:
    """Play `act(obs) -> action` in the real game (same seeds for every policy; `episodes`, else
    --eval-episodes) -> the results entry: gems per teacher episode, or Crafter achievements
    unlocked per episode and Crafter's score."""
    env = make_teacher(args, max_episode_steps=args.eval_max_steps)
    scores, unlocked = [], []
    for ep in tqdm(range(episodes or args.eval_episodes), desc=f"eval {label}", disable=args.no_progress):
        obs, info = env.reset(seed=10_000 + ep)  # held-out seeds
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(act(obs))
            done = terminated or truncated
        if "achievements" in info:  # Crafter
            unlocked.append(sorted(k for k, v in info["achievements"].items() if v > 0))
            scores.append(len(unlocked[-1]))
        else:
            scores.append(int(info["gems"]))
    names = sorted(info.get("achievements", {}))
    env.close()
    if not names:
        return {"gems_per_episode": scores, "gems_mean": float(np.mean(scores))}
    rates = {n: 100.0 * float(np.mean([n in u for u in unlocked])) for n in names}  # success rate, %
    return {"achievements_per_episode": scores, "achievements_mean": float(np.mean(scores)),
            "success_rates": rates, "crafter_score": float(np.exp(np.mean(np.log1p(list(rates.values())))) - 1)}


def load_policy(path: Path, obs_shape: tuple[int, int, int], n_actions: int) -> Agent:
    """A policy saved by `main` (plain tensors), checked against the real game's spaces."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"no saved policy at {path}")
    try:
        state = load_file(str(path))
    except SafetensorError as e:
        raise ValueError(f"{path} is not a readable safetensors file: {e}") from None
    agent = Agent(obs_shape, n_actions)
    expected = {k: tuple(v.shape) for k, v in agent.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if found != expected:
        wrong = sorted(set(found.items()) ^ set(expected.items()))[:4]
        raise ValueError(f"{path} is not a PPO policy for this game ({n_actions} actions, observations "
                         f"{obs_shape}): tensors differ, e.g. {wrong}")
    agent.load_state_dict(state)
    return agent.eval()


def policy_actor(agent: Agent, device: torch.device, seed: int):
    g = torch.Generator(device=device).manual_seed(seed)

    @torch.no_grad()
    def act(obs: np.ndarray) -> int:
        logits = agent.actor(agent.features(torch.as_tensor(obs[None], device=device)))
        return int(torch.multinomial(logits.softmax(-1), 1, generator=g))  # sample, as in training

    return act


def plot_curves(results: dict, ylabel: str, path: Path) -> None:
    """One line per trained policy (its real-game score by env steps), the random policy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, r in results.items():
        if "curve" in r.get("train", {}):
            steps, score = zip(*r["train"]["curve"])
            ax.plot(steps, score, marker="o", label=name.split("/")[-1])
        elif name == "random":
            mean = r.get("gems_mean", r.get("achievements_mean"))
            ax.axhline(mean, color="grey", linestyle="--", label="random")
    ax.set_xlabel("env steps of training")
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(args: Args, results: dict, library: str) -> dict:
    """The results JSON at args.out (the curve PNG beside it, when there are curves) and a summary."""
    game = real_game(args)
    def plain(v):  # Paths (also in lists) as strings
        return str(v) if isinstance(v, Path) else [plain(x) for x in v] if isinstance(v, list) else v

    report = {"args": {k: plain(v) for k, v in asdict(args).items()},
              "library": library,
              "eval": {"env": real_id(args), "motion": game.motion, "episodes": args.eval_episodes,
                       "max_steps": args.eval_max_steps,
                       "seeds": [10_000 + i for i in range(args.eval_episodes)]},
              "results": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    score = "achievements" if game.env == "crafter" else "gems"
    if any("curve" in r.get("train", {}) for r in results.values()):
        plot_curves(results, f"{score} per {real_id(args)} episode", args.out.with_suffix(".png"))
    print(f"\n{score} per {real_id(args)} episode ({args.eval_episodes} episodes, {args.eval_max_steps} steps), "
          f"{library}:")
    for name, r in results.items():
        g = np.asarray(r[f"{score}_per_episode"])
        trained = f"  trained {r['train']['env_steps']} steps" if "train" in r else ""
        crafter = f"  Crafter score {r['crafter_score']:.2f}%" if "crafter_score" in r else ""
        sem = g.std(ddof=1) / np.sqrt(len(g)) if len(g) > 1 else float("nan")
        print(f"  {name:26s} {g.mean():6.2f} +- {sem:5.2f} (standard error){crafter}{trained}")
    print(f"wrote {args.out}")
    return report


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(args.seed)
    spaces = make_teacher(args)
    n_actions, obs_shape = spaces.action_space.n, spaces.observation_space.shape
    spaces.close()
    if args.policies and args.env_ids:
        raise SystemExit("python -m demos.ppo: error: --policies plays saved policies, --env-ids trains new ones: "
                         "give one of them")
    # load every saved policy first: a bad path fails before minutes of play
    try:
        saved = {str(p): load_policy(p, obs_shape, n_actions).to(device) for p in args.policies or []}
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"python -m demos.ppo: error: {e}") from None
    results = {"random": evaluate(lambda obs: int(rng.integers(n_actions)), args, "random")}
    if saved:
        for name, agent in saved.items():
            results[name] = evaluate(policy_actor(agent, device, args.seed), args, Path(name).stem)
        return write_results(args, results, "cleanrl-style PPO (saved policies)")
    for env_id in args.env_ids or [WORLD_ID, real_id(args)]:
        agent, stats = train(args, env_id)
        name = env_id.split("/")[-1]
        save_file(agent.state_dict(), str(args.out.parent / f"policy_{name}.safetensors"))
        results[env_id] = {**evaluate(policy_actor(agent, device, args.seed), args, name), "train": stats}

    return write_results(args, results, "cleanrl-style PPO")


if __name__ == "__main__":
    main()
