"""`echo-infinity record`: play a policy in an env and write episode shards.

`--env teacher` is the teacher world (EchoInfinity/Teacher-v0), `--env crafter`
the Crafter game (EchoInfinity/Crafter-v0, needs the `crafter` package); any other
Gymnasium id works if its actions are Discrete and it has RGB image
observations or an `rgb_array` render, which is resized to the target
resolution (cv2.INTER_AREA, aspect ratio not kept). The shard format is in
`envs/dataset.py`.

    echo-infinity record --env teacher --policy revisit --episodes 10 --steps 1000 --out data/teacher
    echo-infinity record --env crafter --policy explore --episodes 10 --steps 1000 --out data/crafter
    echo-infinity record --env CartPole-v1 --policy random --episodes 4 --steps 200 --out data/cartpole
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from envs.shards import FORMAT, FORMAT_VERSION, MANIFEST, SHARD_GLOB, shard_name, write_episode
from envs.policies import POLICIES, StyleSwitcher, action_meanings, make_policy

TEACHER_ID = "envs:EchoInfinity/Teacher-v0"
CRAFTER_ID = "envs:EchoInfinity/Crafter-v0"
ENV_ALIASES = {"teacher": TEACHER_ID, "crafter": CRAFTER_ID}
RESOLUTIONS = (64, 128, 256)


class RecordError(ValueError):
    """Bad recording input (env, policy, resolution, ...), with the valid choices."""


class _Frames:
    """Turns an env's observation (or render) into an RGB uint8 [R, R, 3] frame."""

    def __init__(self, env, resolution: int, from_render: bool):
        self.env, self.r, self.from_render = env, resolution, from_render

    def __call__(self, obs) -> np.ndarray:
        img = self.env.render() if self.from_render else obs
        img = np.asarray(img)
        if img.ndim == 2:
            img = img[..., None]
        if img.shape[-1] == 1:
            img = np.repeat(img, 3, axis=-1)
        if img.shape[-1] == 4:
            img = img[..., :3]
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        if img.shape[:2] != (self.r, self.r):
            import cv2
            img = cv2.resize(img, (self.r, self.r), interpolation=cv2.INTER_AREA)
        return img


def _is_image_space(space) -> bool:
    from gymnasium import spaces
    if not isinstance(space, spaces.Box) or space.dtype != np.uint8:
        return False
    shape = space.shape
    return len(shape) == 2 or (len(shape) == 3 and shape[-1] in (1, 3, 4))


def make_env(env: str, resolution: int = 64, max_episode_steps: int | None = None, motion: str = "smooth"):
    """Make `env` ("teacher" or a Gymnasium id) for recording (`motion`: the teacher's mode).

    Returns (env, env_id, frames_fn). Raises RecordError for an unknown id, a
    non-Discrete action space, no image output, or an unsupported resolution.
    """
    import gymnasium as gym
    from gymnasium import spaces

    if resolution not in RESOLUTIONS:
        raise RecordError(f"unsupported resolution {resolution}; valid resolutions: "
                          f"{', '.join(map(str, RESOLUTIONS))}")
    env_id = ENV_ALIASES.get(env, env)
    kwargs = {"max_episode_steps": max_episode_steps} if max_episode_steps else {}
    if env_id == TEACHER_ID:
        import envs  # noqa: F401  (registers the teacher ids)
        kwargs["resolution"] = resolution
        kwargs["motion"] = motion
    elif motion != "smooth":
        raise RecordError(f"--motion {motion} is a teacher mode; env {env!r} moves as it moves")
    try:
        e = gym.make(env_id, **kwargs)
    except gym.error.Error as err:                        # NameNotFound, VersionNotFound, ...
        raise RecordError(f"unknown env {env!r}: {err}. Valid: 'teacher' or a registered Gymnasium id "
                          "with Discrete actions and image output, e.g. CartPole-v1; ids from plugin "
                          "packages need the package installed and its module prefix, e.g. "
                          "'ale_py:ALE/Pong-v5'") from None
    except ModuleNotFoundError as err:
        raise RecordError(f"env {env!r} needs a package that is not installed: {err}") from None
    if not isinstance(e.action_space, spaces.Discrete):
        e.close()
        raise RecordError(f"env {env_id!r} has action space {e.action_space}; recording needs "
                          "Discrete actions (e.g. teacher, CartPole-v1, ALE/*)")
    if _is_image_space(e.observation_space):
        return e, env_id, _Frames(e, resolution, from_render=False)
    modes = e.metadata.get("render_modes", [])
    e.close()
    if "rgb_array" not in modes:
        raise RecordError(f"env {env_id!r} has no image output: observations are "
                          f"{e.observation_space} (not an RGB image) and its render modes {modes} "
                          "have no 'rgb_array'")
    try:
        e = gym.make(env_id, render_mode="rgb_array", **kwargs)
    except gym.error.Error as err:
        raise RecordError(f"env {env_id!r} cannot render rgb_array: {err}") from None
    return e, env_id, _Frames(e, resolution, from_render=True)


def record_episodes(env_id: str, policy: str, episodes: int, steps: int, out_dir,
                    resolution: int = 64, seed: int = 0, progress: bool = True,
                    style_switch_prob: float = 0.002, overwrite: bool = False, motion: str = "smooth",
                    slip_prob: float | None = None) -> dict:
    """Record `episodes` episodes of at most `steps` steps into `out_dir`; returns stats.

    `env_id` is "teacher" or a Gymnasium id. Episode i resets with a seed drawn
    from `SeedSequence(seed).spawn(episodes)[i]` (kept as meta "env_seed") and
    its policy and style switches draw from a generator on the same child, so a
    dataset is reproducible from (env, policy, seed). An episode that terminates early is
    kept with its shorter length. `style_switch_prob` (teacher only) is the
    chance per frame of a switch to a random style; `motion` is the teacher's
    motion mode ("smooth" or "tile", saved in the manifest). `slip_prob` (explore and revisit):
    the chance that the policy walks into a hazard it would step around (None: the policy's
    own 1%); the done head learns hazard ends from such episodes. An `out_dir` that already
    holds shards is refused unless `overwrite` (which deletes them first).
    """
    from tqdm import tqdm

    if policy not in POLICIES:
        raise RecordError(f"unknown policy {policy!r}; valid policies: {', '.join(POLICIES)}")
    if episodes < 1 or steps < 1:
        raise RecordError(f"--episodes and --steps must be >= 1, got {episodes} and {steps}")
    if not 0.0 <= style_switch_prob <= 1.0:
        raise RecordError(f"--style-switch-prob must be in [0, 1], got {style_switch_prob}")
    if slip_prob is not None and not (0.0 <= slip_prob <= 1.0 and policy in ("explore", "revisit")):
        raise RecordError(f"--slip-prob needs the explore or revisit policy and a value in [0, 1], "
                          f"got {slip_prob} with {policy!r}")
    kwargs = {} if slip_prob is None else {"slip_prob": slip_prob}
    teacher = ENV_ALIASES.get(env_id, env_id) == TEACHER_ID
    from envs.teacher import MOTIONS
    if motion not in MOTIONS:
        raise RecordError(f"unknown motion {motion!r}; valid: {', '.join(MOTIONS)}")
    env, full_id, to_frame = make_env(env_id, resolution, max_episode_steps=steps if teacher else None,
                                      motion=motion)
    try:
        meanings = action_meanings(env)
        try:
            make_policy(policy, env, np.random.default_rng(0), **kwargs)   # bad policy/env pairs fail before any write
        except ValueError as err:
            raise RecordError(str(err)) from None
        out = _prepare_out_dir(Path(out_dir), overwrite)
        children = np.random.SeedSequence(seed).spawn(episodes)
        frames = np.zeros((steps + 1, resolution, resolution, 3), np.uint8)  # reused per episode
        stats = {"env_id": full_id, "policy": policy, "resolution": resolution, "seed": seed,
                 "episodes": episodes, "steps": 0, "frames": 0, "bytes": 0, "terminated": 0,
                 "revisits": 0, "style_switches": 0}
        manifest = {"format": FORMAT, "version": FORMAT_VERSION, "env_id": full_id, "policy": policy,
                    "resolution": resolution, "motion": motion, "seed": seed, "action_meanings": meanings,
                    "style_switch_prob": style_switch_prob, "slip_prob": slip_prob, "episodes": []}
        t0 = time.perf_counter()
        bar = tqdm(total=episodes * steps, unit="frame", desc=f"record {env_id}/{policy}",
                   disable=not progress, file=sys.stderr)
        for i, child in enumerate(children):
            env_seed = int(child.generate_state(1)[0])
            rng = np.random.default_rng(child)
            pol = make_policy(policy, env, rng, **kwargs)
            switcher = StyleSwitcher(env, rng, style_switch_prob if teacher else 0.0)
            ep = _run_episode(env, pol, switcher, to_frame, frames, env_seed, steps, bar)
            meta = {"env_id": full_id, "policy": policy, "resolution": resolution, "seed": seed,
                    "episode": i, "env_seed": env_seed, "action_meanings": meanings,
                    "style_events": switcher.events, **ep.pop("meta")}
            path = out / shard_name(i)
            size = write_episode(path, frames=frames[:ep["length"] + 1], meta=meta,
                                 **{k: ep[k] for k in ("actions", "rewards", "terminated", "truncated",
                                                       "positions", "captions", "revisits")})
            manifest["episodes"].append({
                "file": path.name, "length": ep["length"], "bytes": size, "sha256": _sha256(path),
                "reward": float(np.sum(ep["rewards"])), "terminated": bool(ep["terminated"].any()),
                "revisits": len(ep["revisits"]), "style_switches": len(switcher.events)})
            stats["steps"] += ep["length"]
            stats["frames"] += ep["length"] + 1
            stats["bytes"] += size
            stats["terminated"] += int(ep["terminated"].any())
            stats["revisits"] += len(ep["revisits"])
            stats["style_switches"] += len(switcher.events)
            bar.update(steps - ep["length"])             # an early end skips the rest of its steps
        bar.close()
        seconds = time.perf_counter() - t0
        manifest["total_steps"] = stats["steps"]
        (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    finally:
        env.close()
    stats.update(seconds=round(seconds, 3), frames_per_s=round(stats["frames"] / seconds, 1),
                 mean_length=round(stats["steps"] / episodes, 1), out_dir=str(out))
    return stats


def _prepare_out_dir(out: Path, overwrite: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise RecordError(f"--out {out} is a file; give a directory")
    old = sorted(out.glob(SHARD_GLOB)) + ([out / MANIFEST] if (out / MANIFEST).exists() else [])
    if old and not overwrite:
        raise RecordError(f"--out {out} already holds a recording ({len(old)} files); choose an empty "
                          "directory or pass --overwrite to replace it")
    for path in old:
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _run_episode(env, policy, switcher, to_frame, frames, env_seed, steps, bar) -> dict:
    obs, info = env.reset(seed=env_seed)
    policy.reset(info)
    switcher.reset()
    frames[0] = to_frame(obs)
    actions = np.zeros(steps, np.int64)
    rewards = np.zeros(steps, np.float32)
    terminated = np.zeros(steps, bool)
    truncated = np.zeros(steps, bool)
    positions = np.zeros((steps + 1, 2), np.int64)
    captions = [str(info.get("caption", ""))]
    positions[0] = info.get("position", (0, 0))
    start_style = info.get("style")
    t = 0
    while t < steps:
        switcher.maybe_switch(t)
        a = policy.act(info)
        obs, r, term, trunc, info = env.step(a)
        actions[t], rewards[t], terminated[t], truncated[t] = a, r, term, trunc
        t += 1
        frames[t] = to_frame(obs)
        positions[t] = info.get("position", (0, 0))
        captions.append(str(info.get("caption", "")))
        bar.update(1)
        if term or trunc:
            break
    return {"length": t, "actions": actions[:t], "rewards": rewards[:t], "terminated": terminated[:t],
            "truncated": truncated[:t], "positions": positions[:t + 1], "captions": captions,
            "revisits": [rv for rv in policy.revisits if rv[1] <= t],
            "meta": {"length": t, "start_style": start_style, "start_caption": captions[0]}}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The `record` subcommand's options."""
    parser.add_argument("--env", default="teacher",
                        help="'teacher' (EchoInfinity/Teacher-v0), 'crafter' (EchoInfinity/Crafter-v0) or any Gymnasium id with Discrete "
                             "actions and RGB image observations or an rgb_array render (default: teacher)")
    parser.add_argument("--policy", default="explore", choices=sorted(POLICIES),
                        help="random: uniform actions; explore: sticky random walk; revisit: excursions "
                             "that return to a place 20-200 frames after leaving it (needs move actions)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to record, one shard each")
    parser.add_argument("--steps", type=int, default=1000,
                        help="steps per episode (fewer if the episode ends); teacher episodes truncate here")
    parser.add_argument("--out", required=True, help="output directory for shards and manifest.json")
    parser.add_argument("--resolution", type=int, default=64,
                        help="frame size R of R x R x 3 frames: 64, 128 or 256 (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (episode seeds derive from it)")
    parser.add_argument("--motion", default="smooth", choices=("smooth", "tile"),
                        help="teacher only: 'smooth' scrolls 2 px a frame; 'tile' moves one tile (one DiT "
                             "token) a frame, the mode the tiny checkpoint is trained in (default smooth)")
    parser.add_argument("--style-switch-prob", type=float, default=0.002,
                        help="teacher only: chance per frame of switching to a random style "
                             "mid-episode (default 0.002, about 2 per 1000 frames)")
    parser.add_argument("--slip-prob", type=float, default=None,
                        help="explore / revisit: chance of walking into a hazard the policy would step "
                             "around (default: the policy's own 0.01); more hazard ends to learn from")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a recording already in --out (its shards and manifest are deleted)")
    parser.add_argument("--json", default=None, help="also write the stats as JSON to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(args: argparse.Namespace) -> int:
    """Run `record` with parsed args; a bad input prints one line and returns 2."""
    from envs.dataset import ShardError
    try:
        stats = record_episodes(args.env, args.policy, args.episodes, args.steps, args.out,
                                resolution=args.resolution, seed=args.seed,
                                progress=not args.no_progress, style_switch_prob=args.style_switch_prob,
                                overwrite=args.overwrite, motion=args.motion, slip_prob=args.slip_prob)
    except (RecordError, ShardError) as err:
        print(f"echo-infinity record: error: {err}", file=sys.stderr)
        return 2
    text = json.dumps(stats, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(add_arguments(argparse.ArgumentParser(prog="echo-infinity record",
                                                                description=__doc__.split("\n\n")[0])).parse_args()))
