"""`echo-infinity bench --target train`: training throughput per stage against the machine.

Runs the real training loop (`world.train.Trainer`: data to latents, loss,
backward, clipping, AdamW) for a few steps of each stage on synthetic batches
of the right shapes, in a throwaway directory, and reports per stage: seconds
a step (median of the timed steps), training frames a second (frames of the
clips a step learns from), the FLOPs of one step (forward + backward, counted
by torch's counter with the CPU attention kernel added, elementwise work not
counted: a lower bound), the achieved GFLOP/s and its share of this machine's
fp32 matmul rate at the same thread count (`world.bench.gemm_gflops`). Speed
across machines is compared by that share, not by seconds.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bench import count_flops, gemm_gflops
from .train_config import STAGES, TrainConfig


def synthetic_batches(image_size: int, num_actions: int, seed: int = 0, episodes: int = 8):
    """A `batches(clip_len, batch, switch_clips=0)` source of random clips with the recorder's
    fields (one caption: no switches). Clips come from a pool of `episodes` fixed clips (keyed
    like recorded ones), so frames recur as they do over a real dataset and the latent cache
    is measured in its steady state."""

    def batches(clip_len: int, batch: int, switch_clips: int = 0):
        rng = np.random.default_rng(seed)
        pool = rng.integers(0, 256, (episodes, clip_len, image_size, image_size, 3), dtype=np.uint8)
        while True:
            pick = rng.integers(0, episodes, batch)
            yield {"frames": torch.from_numpy(pool[pick]),
                   "episode": [f"synthetic/{i}" for i in pick], "start": torch.zeros(batch, dtype=torch.long),
                   "actions": torch.from_numpy(rng.integers(0, num_actions, (batch, clip_len))),
                   "rewards": torch.zeros(batch, clip_len), "terminated": torch.zeros(batch, clip_len, dtype=torch.bool),
                   "positions": torch.zeros(batch, clip_len, 2, dtype=torch.long),
                   "captions": [["a green grassland at noon"] * clip_len for _ in range(batch)]}

    return batches


def run_train_bench(overrides: dict[str, Any] | None = None, steps: int = 6, warmup: int = 3,
                    threads: int = 1, seed: int = 0) -> dict[str, Any]:
    """Time `steps` steps (after `warmup`) of every stage; overrides: TrainConfig fields.
    The warm-up steps also fill the latent cache (8 clips: see `synthetic_batches`)."""
    from .config import from_preset
    from .train import Trainer

    torch.set_num_threads(threads)
    fields = dict(overrides or {})
    run_dir = Path(tempfile.mkdtemp(prefix="train_bench_"))
    n = warmup + steps
    try:
        # the codebook is fitted once per run, not per step: a small fit keeps the bench short
        cfg = TrainConfig(**{"text_encoder": "hash", "codebook_frames": 256, "codebook_iters": 1, "decoder_steps": 0,
                             **fields,
                             "out": str(run_dir), "seed": seed, "log_every": 1,
                             "ckpt_every": 10**9, "warmup": 1, "tok_steps": n, "s1_steps": n, "s2_steps": n,
                             "tok_cpu_minutes": 0.0, "s1_cpu_minutes": 0.0, "s2_cpu_minutes": 0.0})
        mcfg = from_preset(cfg.preset, **cfg.model)
        trainer = Trainer(cfg, synthetic_batches(mcfg.tokenizer.image_size, mcfg.dit.num_actions, seed),
                          progress=False)
        trainer.run()
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        model = trainer.model
        clips = {"tokenizer": (1, cfg.tok_batch),
                 "stage1": (model.policy.sink_frames + model.policy.ring_frames + mcfg.memory.chunk_frames,
                            cfg.s1_batch),
                 "stage2": (cfg.s2_clip, cfg.s2_batch)}
        flops = _step_flops(trainer, clips)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    peak = gemm_gflops()
    stages = {}
    for stage in STAGES:
        secs = [r["sec"] for r in rows if r.get("stage") == stage and "sec" in r][warmup:]  # sec: each step (logged every step)
        sec = float(np.median(secs))
        frames = clips[stage][0] * clips[stage][1]
        gflops = flops[stage] / sec / 1e9
        stages[stage] = {"seconds_per_step": round(sec, 3), "frames_per_step": frames,
                         "frames_per_s": round(frames / sec, 2), "gflop_per_step": round(flops[stage] / 1e9, 2),
                         "gflops": round(gflops, 1), "share_of_matmul_rate": round(gflops / peak, 3)}
    return {"bench": "train", "preset": cfg.preset, "lever": fields, "threads": threads,
            "timed_steps": steps, "machine_matmul_gflops": round(peak, 1),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "stages": stages,
            "date": time.strftime("%Y-%m-%d")}


def _step_flops(trainer, clips: dict[str, tuple[int, int]]) -> dict[str, int]:
    """FLOPs of one forward + backward of each stage's loss on a synthetic batch."""
    from .train import Stage1Loss, Stage2Loss, TokenizerLoss, shift_actions

    model, cfg = trainer.model, trainer.cfg
    batches = synthetic_batches(model.cfg.tokenizer.image_size, model.cfg.dit.num_actions)
    out = {}
    for stage in STAGES:
        clip, batch = clips[stage]
        b = next(batches(clip, batch))
        params = [p for p in model.parameters()]
        for p in params:
            p.requires_grad_(stage == "tokenizer" or not any(p is q for q in model.tokenizer.parameters()))

        def step() -> None:
            if stage == "tokenizer":
                loss = TokenizerLoss(model)(b["frames"].reshape(-1, *b["frames"].shape[2:]))["loss"]
            else:
                frames = b["frames"]
                x0 = model.tokenizer.encode(frames.reshape(-1, *frames.shape[2:])).view(
                    batch, clip, -1, model.cfg.tokenizer.token_dim).detach()
                a, r, d = shift_actions(b, x0.device)
                prompts = [trainer.text(caps[-1]) for caps in b["captions"]]
                if stage == "stage1":
                    loss = Stage1Loss(model, cfg)(x0, a, r, d, prompts, trainer.gen)["loss"]
                else:
                    loss = Stage2Loss(model, cfg)(x0, a, r, d, prompts, torch.ones(batch, clip, x0.shape[2]), trainer.gen)["loss"]
            loss.backward()

        out[stage] = count_flops(step)["total"]
        model.zero_grad(set_to_none=True)
    return out


