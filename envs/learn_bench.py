"""`echo-infinity bench --target learn`: how much a recipe learns in a fixed CPU budget.

The yardstick every training lever is judged by (issue 14): from a fixed seed,
on a fixed recorded dataset, with the tokenizer of a given checkpoint frozen,
train stage 1 for a budget of CPU-minutes (default 30, one thread), then
measure on a few held-out *proxy* seeds (`PROXY_SEED_BASE` + i: neither the
training recordings' nor the evaluation's, so nothing is tuned on the eval
seeds):
- teacher-forced 1-step PSNR (true frames as context) and the share of those
  frames that still show the player, beside the copy-the-previous-frame
  baseline;
- free-rollout PSNR and player visibility at `PROXY_HORIZONS` (1, 4, 16, 64).
Two levers are compared by running this twice side by side, one core each
(`taskset -c 0` / `-c 1`), the same data and seed, and reading the JSON.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from envs.evaluate.config import PROXY_SEED_BASE, eval_seeds  # noqa: F401  (PROXY_SEED_BASE re-exported)

PROXY_HORIZONS = (1, 4, 16, 64)  # free-rollout horizons of both benches (64 shows the drift 16 does not yet)


def run_learn_bench(data: list[str], minutes: float = 30.0, tokenizer_from: str = "checkpoints/tiny",
                    overrides: dict[str, Any] | None = None, seeds: int = 4, threads: int = 1, seed: int = 0,
                    out: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train stage 1 for `minutes` of CPU time and measure it. overrides: TrainConfig fields
    (its `model` field takes preset overrides by section). Returns a JSON-able dict."""
    import torch

    from envs.dataset import clip_batches, list_shards
    from world.bench import gemm_gflops
    from world.model import WorldModel
    from world.train import Trainer
    from world.train_config import TrainConfig

    if minutes <= 0:
        raise ValueError(f"--minutes must be > 0, got {minutes}")
    torch.set_num_threads(threads)
    run_dir = Path(out) if out else Path(tempfile.mkdtemp(prefix="learn_bench_"))
    if (run_dir / "trainer.json").exists():
        raise ValueError(f"{run_dir} holds a training run already; the bench starts fresh (pick another --out)")
    fields = dict(overrides or {})
    cfg = TrainConfig(**{**fields, "out": str(run_dir), "seed": seed, "tok_steps": 0, "s1_steps": 10**9,
                         "s1_cpu_minutes": minutes, "s2_steps": 0})
    shards = [str(p) for d in data for p in list_shards(d)]

    trainer = Trainer(cfg, clip_batches(shards, cfg.seed), progress=progress)
    source = WorldModel.load(tokenizer_from)
    tok = trainer.model.tokenizer
    if replace(source.cfg.tokenizer, codebook_size=0) != replace(tok.cfg, codebook_size=0):
        raise ValueError(f"the tokenizer of {tokenizer_from} ({source.cfg.tokenizer}) does not match "
                         f"the bench model's ({tok.cfg})")
    weights = source.tokenizer.state_dict()
    refit = tok.cfg.codebook_size and source.cfg.tokenizer.codebook_size != tok.cfg.codebook_size
    if refit:  # the source has no codebook of this size: the bench fits one, as training would
        weights.pop("codebook", None)
    tok.load_state_dict(weights, strict=not refit)
    trainer.latent_std = 1.0  # the source's tokenizer is calibrated already: keep it as it is
    if refit:
        trainer.fit_codebook(next(trainer.batches(1, 256))["frames"][:, 0])
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0

    steps = trainer.done["stage1"]
    frames_per_clip = (trainer.model.policy.sink_frames + trainer.model.policy.ring_frames
                       + trainer.model.cfg.memory.chunk_frames)
    result = {
        "bench": "learn", "lever": fields, "cpu_minutes_budget": minutes, "threads": threads, "seed": seed,
        "data": data, "tokenizer_from": tokenizer_from,
        "stage1_steps": steps, "stage1_cpu_seconds": round(trainer.cpu_seconds["stage1"], 1),
        "train_frames_per_s": round(steps * cfg.s1_batch * frames_per_clip / max(trainer.cpu_seconds["stage1"], 1e-9), 2),
        "machine_matmul_gflops": round(gemm_gflops(), 1),
        **measure_proxy(trainer.model.eval(), cfg.text_encoder, seeds, progress),
        "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "run_dir": str(run_dir),
    }
    if out is None:
        shutil.rmtree(run_dir, ignore_errors=True)
        result["run_dir"] = None
    return result


def measure_proxy(model, text_encoder: str, seeds: int = 4, progress: bool = True,
                  horizons: tuple[int, ...] = PROXY_HORIZONS, strip: str | Path | None = None) -> dict[str, Any]:
    """The learn bench's figures for any model (`bench --target proxy` measures a checkpoint
    trained another way, to set beside a bench arm): fidelity on the proxy seeds at
    `horizons`, 16 teacher-forced frames; strip: also a PNG of true vs generated frames."""
    from envs.evaluate import EvalConfig, Game, eval_fidelity, teacher_reference
    from world.text import build_text_encoder

    game = Game(model.cfg.tokenizer.image_size, model.cfg.game.motion)
    ev = EvalConfig(seeds=seeds, horizons=tuple(horizons), teacher_forced_frames=16, progress=progress)
    proxy = eval_seeds(seeds, proxy=True)
    fid, art = eval_fidelity(model, ev, build_text_encoder(text_encoder), proxy, model.cfg.sampler.steps, game,
                             teacher_reference(game), tag=" (proxy)")
    if strip is not None:
        from envs.evaluate.report import save_strip

        save_strip(art["strip_true"], art["strip_gen"], art["strip_cols"], Path(strip))
    d = fid["fidelity_detail"]
    keys = ("teacher_forced_psnr", "teacher_forced_player_visible", "copy_previous_psnr",
            "teacher_forced_psnr_moved", "copy_previous_psnr_moved", "teacher_forced_moved_share",
            "player_visible_by_horizon", "seen_psnr_by_horizon", "tile_valid_by_horizon", "tile_valid_tokenizer",
            "object_share_by_horizon", "object_share_teacher_by_horizon", "teacher_forced_object_share",
            "teacher_forced_object_share_true",
            "tokenizer_psnr_heldout", "tokenizer_psnr_snapped_heldout")
    return {"proxy_seeds": proxy, "psnr_by_horizon": fid["psnr_by_horizon"], **{k: d.get(k) for k in keys}}


def run_proxy(checkpoint: str, seeds: int = 4, horizons: tuple[int, ...] = PROXY_HORIZONS, threads: int = 1,
              strip: str | None = None, progress: bool = True) -> dict[str, Any]:
    """`bench --target proxy`: a trained checkpoint on the proxy seeds, no training."""
    import torch

    from envs.evaluate import load_checkpoint

    torch.set_num_threads(threads)
    ck = load_checkpoint(checkpoint)  # clear errors for a missing or bad checkpoint
    return {"bench": "proxy", "checkpoint": str(checkpoint), "threads": threads, "date": time.strftime("%Y-%m-%d"),
            **measure_proxy(ck.model(), ck.text_encoder, seeds, progress, tuple(horizons), strip)}


def parse_lever(text: str | None) -> dict[str, Any]:
    """--lever: a JSON object of TrainConfig fields, or a path to a JSON file holding one."""
    if not text:
        return {}
    path = Path(text)
    raw = path.read_text() if path.is_file() else text
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"--lever must be a JSON object or a JSON file: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"--lever must be a JSON object, got {type(value).__name__}")
    return value
