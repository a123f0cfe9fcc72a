"""The checkpoint under evaluation, and the runs compared: the teacher's true frames, the model's
free rollout and its teacher-forced one-step predictions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .config import Game, TEACHER_ACTIONS, as_game


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
    ck = Checkpoint(d, cfg, text_encoder_of(d, text_encoder))
    ck.model()  # weights must load and match the config: fail here, not mid-evaluation
    return ck


def text_encoder_of(checkpoint: str | Path, text_encoder: str = "auto") -> str:
    """The prompt encoder a checkpoint plays with: `text_encoder` itself unless "auto", then the one
    in trainer.json beside the weights, else "minilm"."""
    if text_encoder != "auto":
        return text_encoder
    meta = Path(checkpoint) / "trainer.json"
    if meta.is_file():
        try:
            return json.loads(meta.read_text())["train_config"]["text_encoder"]
        except (KeyError, TypeError, ValueError):  # ValueError: not JSON, or not UTF-8
            pass
    return "minilm"


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
    rewards: np.ndarray | None = None  # float32 [T]: the teacher's reward for actions[t]
    terminated: bool = False  # the episode ended in a hazard at step alive - 1


def teacher_run(seed: int, T: int, game: Game | int, actions: Sequence[int] | None = None,
                style=None, switch: tuple[int, Any] | None = None, slip_prob: float = 0.0) -> Episode:
    """Play the real game (`game.env`: the teacher, or Crafter) for T frames: the given actions,
    else its explore policy (walking into a hazard it would step around with `slip_prob` chance;
    none by default).

    switch = (k, style): set_style(style) before the step out of frame k (the teacher).
    Frames after an episode end repeat the last frame (and `alive` says where it ended).
    """
    from envs.games import make_game
    from envs.policies import make_policy

    game = as_game(game)
    env = make_game(game, game.resolution)
    obs, info = env.reset(seed=seed, options=None if style is None else {"style": style})
    policy = None
    if actions is None:
        policy = make_policy("explore", env, np.random.default_rng(seed), slip_prob=slip_prob)
        policy.reset(info)
    frames = np.empty((T + 1, *obs.shape), np.uint8)
    frames[0] = obs
    acts = np.zeros(T, np.int64)
    rewards = np.zeros(T, np.float32)
    terminated = False
    positions = [info["position"]]
    caption, start_style, alive = info["caption"], getattr(env, "style", None), T
    for t in range(T):
        if switch is not None and switch[0] == t:
            env.set_style(switch[1])
        if alive < T:  # ended: the rest repeats the last frame
            frames[t + 1] = frames[t]
            positions.append(positions[-1])
            continue
        a = int(actions[t]) if policy is None else policy.act(info)
        obs, rewards[t], terminated, truncated, info = env.step(a)
        acts[t], frames[t + 1] = a, obs
        positions.append(info["position"])
        if terminated or truncated:
            alive = t + 1
    env.close()
    return Episode(seed, frames, acts, caption, start_style, alive, positions, rewards, bool(terminated))


@torch.no_grad()
def model_rollout(model, first: np.ndarray, prompts: list, actions: np.ndarray, seeds: Sequence[int],
                  steps: int | None, switch: tuple[int, list] | None = None, desc: str = "",
                  progress: bool = True, recache: bool = True, heads: bool = False):
    """B worlds in one batch: first uint8 [B, R, R, 3], actions int64 [B, T] -> frames uint8 [B, T + 1, R, R, 3]
    (heads: and the reward head's values and done probabilities float32 [B, T] of each step).

    frame 0 is `first` (None: generated from the prompt alone, as `play --start generated`
    does, with action NOOP); frame t + 1 is generated from action t. switch = (k, prompts):
    set_prompt (re-caching the window unless recache is False) before generating frame k + 1.
    """
    from tqdm import tqdm

    B, T = actions.shape
    if first is None:  # the world starts from its prompt alone: frame 0 is generated too
        state = model.init_state(B, prompts, list(seeds))
        first = model.step(state, torch.zeros(B, dtype=torch.long), steps).frame.numpy()
    else:
        state = model.init_state(B, prompts, list(seeds), first_frame=torch.from_numpy(first))
    out = np.empty((B, T + 1, *first.shape[1:]), np.uint8)
    out[:, 0] = first
    reward, done = np.zeros((B, T), np.float32), np.zeros((B, T), np.float32)
    act = torch.from_numpy(actions)
    for t in tqdm(range(T), desc=desc, disable=not progress, leave=False):
        if switch is not None and switch[0] == t:
            model.set_prompt(state, switch[1], recache=recache)
        step = model.step(state, act[:, t].contiguous(), steps)
        out[:, t + 1], reward[:, t], done[:, t] = step.frame.numpy(), step.reward.numpy(), step.done_prob.numpy()
    return (out, reward, done) if heads else out


@torch.no_grad()
def teacher_forced(model, true: np.ndarray, prompts: list, actions: np.ndarray, seeds: Sequence[int],
                   steps: int | None, heads: bool = False):
    """One-step predictions with the true past as context: true uint8 [B, T + 1, R, R, 3],
    actions [B, T] -> frames uint8 [B, T, R, R, 3]; frame t is drawn from true frames 0..t
    (committed to the world in place of the model's own), so errors cannot build up.
    heads: also the reward head's values and done probabilities float32 [B, T] that the
    true frame t + 1 gets when committed after action t."""
    B, T = actions.shape
    state = model.init_state(B, prompts, list(seeds), first_frame=torch.from_numpy(true[:, 0]))
    out = np.empty((B, T, *true.shape[2:]), np.uint8)
    reward, done = np.zeros((B, T), np.float32), np.zeros((B, T), np.float32)
    act = torch.from_numpy(actions)
    for t in range(T):
        a = model.check_action(act[:, t].contiguous(), B)
        ctx = model.prepare(state)
        x0 = model.sample(state, ctx, a, steps)
        out[:, t] = model.tokenizer.decode(x0[:, 0]).cpu().numpy()
        hazard = model.walks_into_hazard(state, a)
        r, d = model.commit(state, ctx, model.tokenizer.encode(torch.from_numpy(true[:, t + 1]))[:, None], a)
        r, d = model.outcome(r[:, 0], model.hazard_done(d, hazard)[:, 0])
        reward[:, t], done[:, t] = r.cpu().numpy(), d.cpu().numpy()
    return (out, reward, done) if heads else out
