"""`echo-infinity`: one command line for every way of using the world.

Heavy optional pieces (pygame, the world model's weights, the text encoder)
load only inside the command that needs them. Building the parser imports
torch once (the `train` flags come from `TrainConfig`), about 2 s here.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def _add_play(sub) -> None:
    from demos import play

    p = sub.add_parser(
        "play",
        help="play the world in a pygame window (the teacher game until the model ships)",
        description="Open a window and walk through the world with the keyboard. "
        "Keys: arrows/WASD move, space use, T prompt, F1 help, F2 HUD, F12 screenshot, R record, Esc quit. "
        "Use --headless --frames N for a scripted smoke run without a screen.",
    )
    play.add_arguments(p)
    p.set_defaults(func=play.main)


def _add_record(sub) -> None:
    from envs import record

    p = sub.add_parser(
        "record",
        help="record episodes of the teacher (or any image Gymnasium env) to shards",
        description="Run a policy in an env and write one .npz shard per episode "
        "(uint8 frames, actions, rewards, terminations, captions, positions) plus manifest.json.",
    )
    record.add_arguments(p)
    p.set_defaults(func=record.main)


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train the world model on recorded episodes (tokenizer, stage 1, stage 2; resumable)",
        description="Train tokenizer -> stage 1 (parallel clips) -> stage 2 (streamed clips with memory) "
        "on shards written by `echo-infinity record`. Re-running with the same --out resumes where it "
        "stopped. Every TrainConfig field is a flag; --config reads them from a JSON file first.",
    )
    p.add_argument("--data", nargs="+", type=Path, required=True, help="dataset directories (from `record`)")
    p.add_argument("--config", type=Path, default=None, help="JSON file of TrainConfig fields (flags override it)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    from world.train import TrainConfig  # every field becomes a flag

    for f in fields(TrainConfig):
        if f.name == "model":
            continue  # nested preset overrides: --config JSON only
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=None,
                       help=f"(default: {f.default})")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    import torch

    from envs.dataset import ClipDataset, collate_clips, list_shards
    from world.train import TrainConfig, Trainer, init_distributed

    values = json.loads(args.config.read_text()) if args.config else {}
    known = {f.name for f in fields(TrainConfig)}
    if set(values) - known:
        raise UserError(f"unknown fields in {args.config}: {sorted(set(values) - known)}")
    values.update({k: getattr(args, k) for k in known if getattr(args, k, None) is not None})
    cfg = TrainConfig(**values)
    shards = [str(p) for d in args.data for p in list_shards(d)]  # ShardError names a bad directory
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world_size = init_distributed()

    def batches(clip_len: int, batch: int):
        data = ClipDataset(shards, clip_len, stride=max(1, clip_len // 2),
                           seed=cfg.seed, epochs=None, rank=rank, world_size=world_size)
        return iter(torch.utils.data.DataLoader(data, batch_size=batch, collate_fn=collate_clips))

    out = Trainer(cfg, batches, rank=rank, world_size=world_size, progress=not args.no_progress).run()
    if rank == 0:
        print(f"trained: {out}/model.safetensors + config.json; metrics in {out}/metrics.jsonl")
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="measure speed and write JSON (teacher game or world model)",
        description="Benchmarks are commands, not tests: run one, keep the JSON, "
        "and compare figures measured in the same run.",
    )
    p.add_argument("--target", choices=["teacher", "model", "session"], default="session",
                   help="session: a world held to the --fps budget as a player gets it (default); "
                   "model: the bare streaming step; teacher: the procedural game's frames/s")
    p.add_argument("--fps", type=float, default=20.0, help="session: the frame budget (default 20)")
    p.add_argument("--pace", action="store_true",
                   help="session: sleep to each frame's deadline and count misses (a real-time run)")
    p.add_argument("--frames", type=int, default=20_000, help="frames to step (default 20000)")
    p.add_argument("--resolution", type=int, default=64, help="teacher: frame size 64, 128 or 256 (default 64)")
    p.add_argument("--preset", default="tiny", help="model: preset to build with --random-init (default tiny)")
    p.add_argument("--random-init", action="store_true",
                   help="model: time fresh random weights of --preset instead of a trained --checkpoint")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="model: directory with model.safetensors + config.json")
    p.add_argument("--policy", nargs="+", default=["evolving"],
                   choices=["window", "sink", "compress", "evolving", "full"],
                   help="model, session: memory policy; several run one after another in this process (default evolving)")
    p.add_argument("--steps", type=int, default=2, help="model: denoising steps per frame (default 2)")
    p.add_argument("--batch", type=int, default=1, help="model: worlds stepped together (default 1)")
    p.add_argument("--threads", type=int, default=1,
                   help="model: torch threads (default 1: one tiny frame is too small to split; "
                   "2 threads collapse when another process holds a core)")
    p.add_argument("--seed", type=int, default=0, help="seed for the world and the random actions")
    p.add_argument("--json", type=Path, default=None, help="write the result to this JSON file too")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_bench)


def _run_bench(args) -> int:
    if args.frames < 1:
        raise UserError(f"--frames must be >= 1, got {args.frames}")
    if args.target == "teacher":
        from envs.bench import bench_teacher

        if args.resolution not in (64, 128, 256):
            raise UserError(f"--resolution must be 64, 128 or 256, got {args.resolution}")
        result = bench_teacher(args.frames, args.resolution, args.seed, progress=not args.no_progress)
    elif args.target == "session":
        from .bench import run_session_bench

        if not args.random_init and args.checkpoint is None:
            raise UserError("--target session needs --checkpoint DIR or --random-init")
        runs = [run_session_bench(checkpoint=None if args.checkpoint is None else str(args.checkpoint),
                                  frames=args.frames, fps=args.fps, pace=args.pace, policy=policy, seed=args.seed,
                                  threads=args.threads, random_init=args.random_init, preset=args.preset,
                                  progress=not args.no_progress)
                for policy in args.policy]
        result = runs[0] if len(runs) == 1 else {"runs": runs}
    else:
        from world.bench import run_model_bench

        if not args.random_init and args.checkpoint is None:
            raise UserError("--target model needs --checkpoint DIR or --random-init")
        runs = [run_model_bench(preset=args.preset, policy=policy, frames=args.frames, steps=args.steps,
                                batch=args.batch, seed=args.seed, random_init=args.random_init,
                                checkpoint=None if args.checkpoint is None else str(args.checkpoint),
                                threads=args.threads, progress=not args.no_progress)
                for policy in args.policy]
        result = runs[0] if len(runs) == 1 else {"runs": runs}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="echo-infinity",
        description="Echo-Infinity: an endless world drawn frame by frame by a video diffusion "
        "transformer with evolving memory. Run a subcommand with --help for its options.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_play, _add_record, _add_train, _add_bench):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, ValueError, FileNotFoundError) as e:
        # Bad input gets one clear line, not a traceback from deep inside.
        print(f"echo-infinity {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
