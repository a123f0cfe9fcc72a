"""Teacher speed: frames per second of the procedural game on this machine."""
from __future__ import annotations

import os
import platform
import time

import numpy as np
from tqdm import tqdm

from .teacher import ACTION_MEANINGS, TeacherEnv


def bench_teacher(frames: int = 20_000, resolution: int = 64, seed: int = 0, progress: bool = True) -> dict:
    """Step the raw env with sticky random actions (each held 8-32 frames, so the
    player walks into new terrain and chunks get generated); resets on hazards
    are included in the time. Actions are drawn up front: the timed loop is the game alone.
    """
    env = TeacherEnv(resolution=resolution)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    holds = rng.integers(8, 33, frames // 8 + 1)
    actions = np.repeat(rng.integers(0, len(ACTION_MEANINGS), len(holds)), holds)[:frames]
    episodes = 1
    t0 = time.perf_counter()
    for a in tqdm(actions, desc=f"teacher {resolution}px", disable=not progress, mininterval=0.5):
        _, _, terminated, _, _ = env.step(int(a))
        if terminated:
            env.reset()
            episodes += 1
    seconds = time.perf_counter() - t0
    return {
        "target": "teacher",
        "frames": frames,
        "resolution": resolution,
        "seconds": round(seconds, 3),
        "fps": round(frames / seconds, 1),
        "episodes": episodes,
        "threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "cpu": platform.processor() or platform.machine(),
    }
