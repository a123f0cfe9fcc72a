"""The runtime bench: a `Session` held to a frame budget for N frames.

Where `world.bench` times the bare model step, this times what a player gets:
the session with its adaptive denoising steps, optional pacing to the clock,
the rewind snapshots and the output checks. Same JSON names as the model
bench (`fps`, `latency_ms`, `latency_ratio_last_first`, `rss_mb`, here with an
`after_warmup` reading once the rewind ring and the backend's arenas are full)
plus `budget_fps`, `budget_miss_rate` (frames ready after their deadline;
paced runs only, else null), `over_budget_rate` (frames whose own latency
exceeded the budget, paced or not), `gpu_memory_mb` (peak allocated; null on
CPU), `steps_used` ({steps: frames}) and `non_finite`. With `switch_every` the
prompt switches every N frames and `switch` reports its cost: `recache_ms` (the
`set_prompt` call: the window's K/V recomputed), the latency of the frame that
carries it (`frame_ms_p50`, the restyle's repaint included) and, with
`sampler.switch_guidance`, of the `guided_frames` after it (`guided_frame_ms_p50`;
`held_switches`: the switches guided, those the restyle did not repaint) against
the others' (`other_frame_ms_p50`); per switch, `extra_ms_per_switch` (what the switch's frames
took beyond the others' median, the re-cache included: the session charges it to
the switch frame) and `over_budget_ms_per_switch` (what they took beyond the frame
budget: the delay a player can see).
"""
from __future__ import annotations

import time
from collections import Counter

import numpy as np
import torch

from world.bench import latency_summary, rss_mb
from world.model import build_model

from .budget import BudgetConfig
from .session import FrameError, Session


def run_session_bench(checkpoint: str | None = None, frames: int = 2000, fps: float = 20.0, pace: bool = False,
                      policy: str | None = None, seed: int = 0, threads: int | None = 1, random_init: bool = False,
                      preset: str = "tiny", text_encoder: str = "minilm", backend: str = "torch",
                      device: str = "cpu", switch_every: int = 0, progress: bool = True) -> dict:
    """Step one world with random actions (held for a few frames, like a player) for `frames` frames."""
    from tqdm import tqdm

    if frames < 4:
        raise ValueError(f"frames must be >= 4, got {frames}")
    if switch_every < 0:
        raise ValueError(f"switch_every must be >= 0, got {switch_every}")
    if threads is not None:
        torch.set_num_threads(threads)
    if random_init:
        source = build_model(preset, memory={"policy": policy or "evolving"}).randomize_(seed)
        policy = None
    elif checkpoint is None:
        raise ValueError("pass a checkpoint directory or random_init=True")
    else:
        source = checkpoint
    session = Session(source, budget=BudgetConfig(fps=fps), pace=pace, policy=policy, text_encoder=text_encoder,
                      backend=backend, device=device)
    rng = np.random.default_rng(seed)
    session.reset(seed=seed, prompt="a grassy meadow at noon")
    actions = np.repeat(rng.integers(0, session.num_actions, size=frames // 8 + 1), 8)[:frames]
    rss_start = rss_warm = rss_mb()
    lat = np.empty(frames)
    steps_used: Counter[int] = Counter()
    non_finite = 0
    frame_means = np.empty(frames)
    switch_prompts = ("a snowy forest at night", "a grassy meadow at noon")
    recache_ms, switched, held = [], np.zeros(frames, bool), np.zeros(frames, bool)
    t_start = time.perf_counter()
    for i in tqdm(range(frames), desc=f"session {session.cfg.memory.policy}", disable=not progress, mininterval=1.0):
        if switch_every and i > 0 and i % switch_every == 0:
            t0 = time.perf_counter()
            session.set_prompt(switch_prompts[(i // switch_every) % 2])
            recache_ms.append((time.perf_counter() - t0) * 1e3)
            switched[i] = True
            held[i] = bool(session.model.switching(session.state).any())  # a repainted world is not (restyle)
        try:
            out = session.advance(int(actions[i]))
        except FrameError:
            non_finite += 1
            lat[i] = np.nan
            continue
        lat[i] = out.latency_ms
        if i + 1 == min(1000, frames // 4):
            rss_warm = rss_mb()  # after the rewind ring and the backend's arenas have filled
        steps_used[out.steps] += 1
        frame_means[i] = out.frames.mean()
    total = time.perf_counter() - t_start
    stats = session.stats()
    ms = lat[np.isfinite(lat)]
    k = min(1000, len(ms) // 4)
    budget_ms = 1000.0 / fps
    switch = None
    if recache_ms:
        ok = np.isfinite(lat)
        s = session.cfg.sampler  # frames guided after a switch (WorldModel.guidance_scales)
        hold = s.snap_hold if s.switch_scale != s.guidance else 0
        period = switched.copy()  # the switch frame and the guided frames after it
        for i in np.flatnonzero(held):
            period[i:i + hold] = True
        guided = period & ~switched & ok
        other = float(np.median(lat[~period & ok]))
        n = len(recache_ms)  # the session charges the re-cache to the switch frame's latency
        extra = float(np.sum(lat[period & ok] - other)) / n
        late = float(np.sum(np.maximum(lat[period & ok] - 1000.0 / fps, 0.0))) / n
        switch = {"every": switch_every, "count": len(recache_ms),
                  "recache_ms": {"p50": float(np.median(recache_ms)), "max": float(np.max(recache_ms))},
                  "frame_ms_p50": float(np.median(lat[switched & ok])),
                  "guided_frames": hold, "held_switches": int(held.sum()),
                  "guided_frame_ms_p50": float(np.median(lat[guided])) if guided.any() else None,
                  "other_frame_ms_p50": other,
                  "extra_ms_per_switch": extra, "over_budget_ms_per_switch": late}
    return {
        "fps": frames / total,
        "switch": switch,
        **latency_summary(ms),
        "rss_mb": {"start": rss_start, "after_warmup": rss_warm, "end": rss_mb()},
        "gpu_memory_mb": (torch.cuda.max_memory_allocated() / 2**20) if str(device).startswith("cuda") else None,
        "budget_fps": fps,
        "budget_miss_rate": stats.get("budget_miss_rate") if pace else None,
        "over_budget_rate": float((ms > budget_ms).mean()),
        "paced": pace,
        "steps_used": {str(s): n for s, n in sorted(steps_used.items())},
        "step_changes": stats["step_changes"],
        "non_finite": non_finite,
        "frame_mean_first_last": [float(np.nanmean(frame_means[:k])), float(np.nanmean(frame_means[-k:]))],
        "frames": frames,
        "final_frame_index": session.frame_index,
        "policy": session.cfg.memory.policy,
        "checkpoint": session.checkpoint,
        "backend": backend,
        "threads": torch.get_num_threads(),
    }
