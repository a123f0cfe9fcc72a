"""`echo-infinity`: one command line for every way of using the world.

Heavy optional pieces (pygame, the world model's weights, the text encoder)
load only inside the command that needs them. The CLI sits at the top of the
stack (world -> engines -> runtime -> envs -> demos): it dispatches to every
package and nothing imports it. Building the parser does not import torch (the
`train` flags come from the torch-free `world.train_config`), so `--help` is quick.
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
        help="play the world in a pygame window (the world model; the teacher game until a checkpoint ships)",
        description="Open a window and walk through the world with the keyboard. The world model draws it "
        "when a checkpoint exists (checkpoints/tiny, or --checkpoint DIR); without one, the teacher game. "
        "Keys: arrows/WASD move, space use, T prompt, F1 help, F2 HUD, F5 save, F9 load, Backspace rewind, "
        "F12 screenshot, R record, Esc quit. --compare shows the teacher's true frame beside the generated one. "
        "Use --headless --frames N for a scripted smoke run without a screen.",
    )
    play.add_arguments(p)
    p.set_defaults(func=play.main)


def _add_kiosk(sub) -> None:
    from demos import kiosk

    p = sub.add_parser(
        "kiosk",
        help="run the world unattended on a public screen (fullscreen, attract mode, watchdog)",
        description="Fullscreen play for visitors who cannot quit; after idle time an autopilot walks the "
        "world through a prompt playlist; fresh worlds on idle and after a session cap; a watchdog restarts "
        "the world on a failed or stalled frame; operator hotkeys ctrl+alt+R/P/Q (reset, next prompt, quit); "
        "a rotating log. Everything is set in a TOML file: see the documented sample demos/kiosk.toml.",
    )
    kiosk.add_arguments(p)
    p.set_defaults(func=kiosk.main)


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
    from world.train_config import TrainConfig  # every field becomes a flag (torch-free)

    for f in fields(TrainConfig):
        if f.name == "model":  # nested preset overrides, as a JSON object
            p.add_argument("--model", type=_json_object, default=None, metavar="JSON",
                           help='preset overrides by section, e.g. \'{"dit": {"depth": 2}}\'; with --init-from, '
                           "the checkpoint's architecture changed (weights of the same name and shape carry over)")
            continue
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=None,
                       help=f"(default: {f.default})")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    import torch

    from envs.dataset import clip_batches, list_shards, load_episode, whole_episodes
    from world.train import TrainConfig, Trainer, init_distributed

    values = _read_json_object(args.config) if args.config else {}
    known = {f.name for f in fields(TrainConfig)}
    if set(values) - known:
        raise UserError(f"unknown fields in {args.config}: {sorted(set(values) - known)}")
    values.update({k: getattr(args, k) for k in known if getattr(args, k, None) is not None})
    cfg = TrainConfig(**values)
    shards = [str(p) for d in args.data for p in list_shards(d)]  # ShardError names a bad directory
    for shard in shards:  # ~1 ms each (frames stay on disk): a bad shard fails now, not hours into training
        load_episode(shard, mmap=True)
    _check_motion(cfg, args.data)
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world_size = init_distributed()

    out = Trainer(cfg, clip_batches(shards, cfg.seed, rank, world_size), rank=rank, world_size=world_size,
                  progress=not args.no_progress, recordings=lambda: whole_episodes(shards)).run()
    if rank == 0:
        print(f"trained: {out}/model.safetensors + config.json; metrics in {out}/metrics.jsonl")
    return 0


def _add_codebook(sub) -> None:
    from world.train_config import TrainConfig

    p = sub.add_parser(
        "codebook",
        help="fit the tile codebook of a trained checkpoint, tune its decoder to it, switch the snap on",
        description="k-means over the checkpoint tokenizer's tokens of recorded frames (world/codebook.py), "
        "then the decoder alone trained on those frames, half of them through the codebook "
        "(world.train.tune_decoder); writes the checkpoint to --out with the codebook, "
        "tokenizer.codebook_size and sampler.snap set, so every generated token is snapped onto a real "
        "tile's code. `train` does both itself when the model's preset has a codebook; this adds one to a "
        "checkpoint trained without (or refits it).",
    )
    p.add_argument("--checkpoint", required=True, help="trained checkpoint directory (model.safetensors + config.json)")
    p.add_argument("--data", nargs="+", type=Path, required=True, help="dataset directories (from `record`)")
    p.add_argument("--out", type=Path, required=True, help="where the checkpoint with its codebook is written")
    p.add_argument("--size", type=int, default=4096, help="codes (default 4096, as the tiny preset)")
    p.add_argument("--frames", type=int, default=8192, help="recorded frames whose tokens are clustered (default 8192)")
    p.add_argument("--iters", type=int, default=15, help="k-means iterations (default 15)")
    p.add_argument("--decoder-steps", type=int, default=TrainConfig.decoder_steps,
                   help=f"decoder training steps after the fit (default {TrainConfig.decoder_steps}; 0: keep the decoder)")
    p.add_argument("--decoder-lr", type=float, default=TrainConfig.decoder_lr,
                   help=f"peak learning rate of the decoder tune (default {TrainConfig.decoder_lr})")
    p.add_argument("--decoder-detail-weight", type=float, default=TrainConfig.decoder_detail_weight,
                   help="extra loss weight of high-contrast pixels (sprite edges) in the decoder tune "
                   f"(default {TrainConfig.decoder_detail_weight}; 0: plain MSE)")
    p.add_argument("--model", type=_json_object, default=None, metavar="JSON",
                   help="changes to the checkpoint's model config, e.g. '{\"tokenizer\": {\"decoder\": \"tile\"}}' "
                   "(a new decoder: it starts fresh and needs --decoder-steps; every other weight is carried)")
    p.add_argument("--seed", type=int, default=0, help="frame draw, k-means and decoder seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run_codebook)


def _run_codebook(args) -> int:
    import torch

    from envs.dataset import clip_batches, list_shards
    from world.model import WorldModel
    from world.train import fit_codebook, psnr, tune_decoder
    from world.train_config import TrainConfig

    changes = dict(args.model or {})
    changes["tokenizer"] = {**changes.get("tokenizer", {}), "codebook_size": args.size}
    changes["sampler"] = {**changes.get("sampler", {}), "snap": True}
    torch.manual_seed(args.seed)  # a new decoder's initial weights
    # CheckpointError / FileNotFoundError / ValueError (a bad size or config): one line each
    model, fresh, _ = WorldModel.warm_start(args.checkpoint, changes)
    cfg, fresh = model.cfg, [k for k in fresh if k != "tokenizer.codebook"]  # the codebook is fitted below
    if any(not k.startswith("tokenizer.decoder.") for k in fresh):
        raise UserError(f"--model changes more than the decoder ({', '.join(fresh[:3])}...): use `train --model`")
    if fresh and not args.decoder_steps:
        raise UserError("--model gives a new decoder: it needs --decoder-steps > 0")
    if args.frames * cfg.tokenizer.tokens_per_frame < args.size:
        raise UserError(f"--frames {args.frames} give {args.frames * cfg.tokenizer.tokens_per_frame} tokens, "
                        f"fewer than the {args.size} codes to fit")
    if args.iters < 1:
        raise UserError(f"--iters must be >= 1, got {args.iters}")
    if args.decoder_steps < 0:
        raise UserError(f"--decoder-steps must be >= 0, got {args.decoder_steps}")
    if args.decoder_lr <= 0 or args.decoder_detail_weight < 0:
        raise UserError("--decoder-lr must be > 0 and --decoder-detail-weight >= 0")
    model.eval()
    batches = clip_batches([str(p) for d in args.data for p in list_shards(d)], args.seed)
    fit_codebook(model.tokenizer, batches, args.frames, args.iters, args.seed)
    tok, frames = model.tokenizer, next(batches(1, 256))["frames"][:, 0]
    fitted = f"tokenizer round trip {psnr(tok, frames)} dB, through the codebook {psnr(tok, frames, snap=True)} dB"
    print(f"codebook of {args.size} codes fitted on {args.frames} frames; {fitted}")
    if args.decoder_steps:
        tune_decoder(tok, batches, args.decoder_steps, args.decoder_lr, TrainConfig.decoder_snap_share,
                     args.seed, progress=not args.no_progress, detail_weight=args.decoder_detail_weight)
        print(f"decoder tuned for {args.decoder_steps} steps; round trip {psnr(tok, frames)} dB, "
              f"through the codebook {psnr(tok, frames, snap=True)} dB")
    model.save(args.out)
    print(f"-> {args.out}")
    return 0


def _add_passability(sub) -> None:
    from world.config import SPAWN_ON

    p = sub.add_parser(
        "passability",
        help="count which tiles stop a move from recordings and give the checkpoint that table",
        description="For every recorded move step, the code the frame shows on the tile the move walks onto "
        "and whether the player's position changed; P(blocked | code), pooled over each code's nearest "
        "codes, becomes a table of the checkpoint (world/passability.py) and game.passability is set: a move "
        "key whose target tile blocks keeps the camera where the DiT would slide the view. Every episode of "
        "--data is read once. `train` fills the table itself when the model has game.passability; this "
        "adds one to a trained checkpoint (or counts it again). Needs a codebook and tile-step motion.",
    )
    p.add_argument("--checkpoint", required=True, help="trained checkpoint directory (model.safetensors + config.json)")
    p.add_argument("--data", nargs="+", type=Path, required=True,
                   help="dataset directories (from `record`, the checkpoint's game and motion)")
    p.add_argument("--out", type=Path, required=True, help="where the checkpoint with its table is written")
    p.add_argument("--spawn", action="store_true",
                   help="also count the collectibles new ground shows (world/spawn.py: a code whose walked-onto steps "
                        "paid, placed where a move brings unknown ground into view, at the rate the recordings show "
                        "one beside the tile next to it); sets game.spawn and turns the tile map on, whose places "
                        "they are kept at")
    p.add_argument("--spawn-on", choices=SPAWN_ON, default=None,
                   help="with --spawn: which new tokens may become collectibles (game.spawn_on): 'drawn', those "
                        "the copy gate draws; 'entered', every token a move brings in, also those the gate copies "
                        "(default: the checkpoint's own, 'drawn' for a new table)")
    p.add_argument("--hazards", action="store_true",
                   help="also count which tiles end an episode when walked onto (world/passability.py); sets "
                        "game.hazards: a move onto one ends the episode, where the done head misses it")
    p.add_argument("--calibrate-spawn", action="store_true",
                   help="then fit game.spawn_gain (envs/spawn_gain.py): a walker's keys, replayed in the dream "
                        "from the teacher's start frame, show as many gems in the new ground they bring into view "
                        "as in the teacher (calibration seeds 60,000 +; needs a spawn table, and the prompt encoder)")
    p.add_argument("--calibrate-walks", type=int, default=256, help="walks of the calibration (default 256)")
    p.add_argument("--calibrate-steps", type=int, default=32,
                   help="keys a walk (default 32: World-v0's dream length in the PPO demo)")
    p.add_argument("--calibration-json", type=Path, default=None, help="write the calibration's figures here")
    p.add_argument("--text-encoder", choices=("auto", "minilm", "hash"), default="auto",
                   help="the prompt encoder of the calibration (default auto: trainer.json's, else minilm)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_passability)


def _run_passability(args) -> int:
    from tqdm import tqdm

    from envs.dataset import list_shards, whole_episodes
    from world.model import WorldModel
    from world.train import fit_passability
    from world.train_config import TrainConfig

    # CheckpointError / FileNotFoundError / ValueError (no codebook, smooth motion): one line each
    overrides = {"game": {"passability": True}}  # a table the checkpoint has stays; a flag adds one
    if args.spawn:
        overrides = {"game": {"passability": True, "spawn": True}, "sampler": {"tile_map": True}}
    if args.spawn_on is not None:
        if not args.spawn:
            raise UserError("--spawn-on needs --spawn (it says where the counted collectibles are placed)")
        overrides["game"]["spawn_on"] = args.spawn_on
    if args.hazards:
        overrides["game"]["hazards"] = True
    if min(args.calibrate_walks, args.calibrate_steps) < 1:
        raise UserError("--calibrate-walks and --calibrate-steps must be >= 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model, _, _ = WorldModel.warm_start(args.checkpoint, overrides)
    if args.calibrate_spawn and model.spawn is None:
        raise UserError("--calibrate-spawn needs a spawn table: give --spawn (or a checkpoint that has one)")
    _check_motion(TrainConfig(init_from=args.checkpoint), args.data)
    shards = [str(p) for d in args.data for p in list_shards(d)]
    episodes = tqdm(whole_episodes(shards), total=len(shards), desc="episodes", disable=args.no_progress)
    counted = fit_passability(model.eval(), episodes)
    if not counted["move_steps"]:
        raise UserError(f"no move steps in {' '.join(map(str, args.data))}: nothing to count")
    print(f"passability counted over {counted['move_steps']} move steps of {len(shards)} episodes "
          f"({counted['blocked_share']:.1%} blocked): {counted['codes_blocked']} of "
          f"{len(model.passability.blocked)} codes stop a move")
    if model.passability.ends is not None:
        print(f"hazards: {counted['ended_share']:.2%} of the move steps ended the episode; {counted['codes_ending']} "
              f"codes end one")
    if model.spawn is not None:
        print(f"spawn: {counted['paid_share']:.2%} of the move steps paid; {counted['collectibles']} collectible "
              f"codes placed, next to a tile at {counted['spawn_rate_mean']:.2%} on average")
    if args.calibrate_spawn:
        _calibrate_spawn(model, args)
    model.save(args.out)
    print(f"-> {args.out}")
    return 0


def _calibrate_spawn(model, args) -> None:
    """`passability --calibrate-spawn`: fit game.spawn_gain in place and say what was measured."""
    from envs.evaluate.rollouts import text_encoder_of
    from envs.spawn_gain import calibrate
    from world.text import build_text_encoder

    text = build_text_encoder(text_encoder_of(args.checkpoint, args.text_encoder))
    fit = calibrate(model, text, args.calibrate_walks, args.calibrate_steps, progress=not args.no_progress)
    t = fit["teacher"]
    print(f"spawn gain: {t['gems']} of the teacher's {t['places']} new-ground places held a gem ({t['density']:.2%}) "
          f"over {fit['walks']} walks of {fit['steps']} keys; it paid {t['per_1000']:.1f} per 1,000 new-ground steps")
    for p in fit["points"]:
        print(f"  gain {p['gain']:.2f}: the dream's {p['places']} places held {p['gems']} ({p['density']:.2%}, "
              f"{p['ratio']:.0%} of the teacher's); it paid {p['per_1000']:.1f} per 1,000")
    print(f"game.spawn_gain = {fit['gain']:.3g}")
    if args.calibration_json is not None:
        args.calibration_json.parent.mkdir(parents=True, exist_ok=True)
        args.calibration_json.write_text(json.dumps(fit, indent=2) + "\n")


def _add_restyle(sub) -> None:
    p = sub.add_parser(
        "restyle",
        help="teach a checkpoint to repaint its world when the prompt changes (teacher checkpoints)",
        description="The teacher draws places of its worlds in two looks (the same tiles, player and weather "
        "frame: envs/style_pairs.py); the checkpoint's tokenizer reads both, and a small translator learns "
        "each code's code in the other look, with a read of the prompt that names the look (world/restyle.py: "
        "each field read from the pooled embedding or from the tokens, whichever reads train words it was not "
        "fitted on right, tried first on a split of the train wording). The checkpoint is written to --out "
        "with game.restyle set: a prompt switch repaints every tile the world keeps (window, previous frame, "
        "tile map) before the window is re-cached, so the world shows the new look at once, places left included. Other weights are "
        "unchanged. Reports the translation's PSNR on other worlds against the snapped round trip, and the "
        "read's accuracy on train captions and held-out paraphrases.",
    )
    p.add_argument("--checkpoint", required=True, help="trained checkpoint directory (model.safetensors + config.json)")
    p.add_argument("--out", type=Path, required=True, help="where the checkpoint with its restyle is written")
    p.add_argument("--worlds", type=int, default=1600, help="teacher worlds drawn (default 1600)")
    p.add_argument("--per-world", type=int, default=8, help="places per world, each in two looks (default 8)")
    p.add_argument("--captions", type=int, default=3000, help="train captions the read is fitted on (default 3000)")
    p.add_argument("--steps", type=int, default=1500, help="training steps (default 1500)")
    p.add_argument("--text-encoder", choices=("minilm", "hash"), default="minilm",
                   help="the prompt encoder the checkpoint plays with (default minilm; hash: tests)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0, help="worlds, looks and training seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run_restyle)


def _run_restyle(args) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from envs.style_pairs import FIELD_SIZES, LEAVE_OUT, captions, render_pairs
    from world import codebook, restyle
    from world.model import WorldModel
    from world.text import build_text_encoder

    for name in ("worlds", "per_world", "captions", "steps"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    # CheckpointError / FileNotFoundError / ValueError (no codebook): one line each
    model, _, _ = WorldModel.warm_start(args.checkpoint, {"game": {"restyle": list(FIELD_SIZES)}})
    cfg = model.cfg
    if cfg.game.env != "teacher":
        raise UserError(f"{args.checkpoint} plays {cfg.game.env!r}, which has no looks a prompt names; "
                        "restyle needs a teacher checkpoint")
    model.eval()
    book, text = model.tokenizer.codebook, build_text_encoder(args.text_encoder)

    @torch.no_grad()
    def codes(frames: np.ndarray) -> torch.Tensor:  # uint8 [F, R, R, 3] -> int64 [F, N]
        return torch.cat([codebook.nearest(model.tokenizer.encode(torch.from_numpy(frames[i:i + 256])), book)
                          for i in range(0, len(frames), 256)])

    def embed(caps: list[str]) -> tuple[torch.Tensor, ...]:  # as the world state keeps a prompt
        return model.prompt_tensors([text(c) for c in tqdm(caps, desc="captions", leave=False,
                                                            disable=args.no_progress)], len(caps))

    def scores(found: dict) -> str:
        return "; ".join(f"{name} " + " / ".join(f"{sure:.0%} ({right:.0%})" for sure, right in per_field)
                         for name, per_field in found.items())

    res, motion = cfg.tokenizer.image_size, cfg.game.motion
    fields = "biome / time of day / weather"
    # which read each field takes: fitted on part of the train wording, judged on the rest
    caps, described = captions(args.captions, args.seed, part="fit", omit=LEAVE_OUT)
    restyle.fit_reads(model.restyle, embed(caps), torch.from_numpy(described))
    caps, described = captions(600, args.seed + 1, part="check", omit=LEAVE_OUT)
    found = restyle.choose_reads(model.restyle, embed(caps), torch.from_numpy(described))
    tokens = [name for name, t in zip(fields.split(" / "), model.restyle.from_tokens) if t]
    print(f"reads on train words they were not fitted on, sure of ({fields}) (right when sure): "
          f"{scores(found)}; from the tokens: {', '.join(tokens) or 'none'}")
    pairs = render_pairs(args.worlds, args.per_world, args.seed, res, motion)
    caps, described = captions(args.captions, args.seed, omit=LEAVE_OUT)
    bar = tqdm(total=args.steps, desc="restyle", disable=args.no_progress)

    def progress(step, losses):
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})

    losses = restyle.fit(model.restyle, book, codes(pairs.frames_a), codes(pairs.frames_b),
                         torch.from_numpy(pairs.values_b), embed(caps), torch.from_numpy(described), args.steps,
                         seed=args.seed, progress=progress)
    bar.close()
    # judged on other worlds (seeds past the fitted ones), every field named
    test = render_pairs(64, 4, args.seed + 10 * args.worlds + 7, res, motion, keep=0.0)
    a, b = codes(test.frames_a), codes(test.frames_b)
    with torch.no_grad():
        wanted = restyle.one_hot(torch.from_numpy(test.values_b), model.restyle.fields)
        moved = model.restyle.logits(a, book, wanted).argmax(-1)
        true = torch.from_numpy(test.frames_b).float()
        def db(c: torch.Tensor) -> float:  # mean PSNR of the decoded codes against look B's frames
            err = (model.tokenizer.decode(book[c]).float() - true).pow(2).mean((1, 2, 3)).clamp(min=1e-6)
            return float((10 * torch.log10(255.0 ** 2 / err)).mean())
        print(f"restyle fitted ({args.steps} steps, losses {losses['translate']:.3f} / {losses['read']:.3f}); "
              f"other worlds, look B: translated {db(moved):.2f} dB, snapped round trip {db(b):.2f} dB, "
              f"look A as it was {db(a):.2f} dB")
        for wording, held in (("train captions", False), ("held-out paraphrases", True)):
            caps, described = captions(600, args.seed + 1, heldout=held)
            found = restyle.read_scores(model.restyle, embed(caps), torch.from_numpy(described))
            chosen = [found["tokens" if t else "pooled"][i] for i, t in enumerate(model.restyle.from_tokens)]
            print(f"read, {wording}: sure of ({fields}) (right when sure): {scores({'chosen': chosen})}")
    model.save(args.out)
    print(f"-> {args.out}")
    return 0


def _json_object(text: str) -> dict:
    """train --model: a JSON object given on the command line (argparse reports the error)."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {type(value).__name__}")
    return value


def _read_json_object(path: Path) -> dict:
    """train --config: a JSON object, or a UserError naming the file."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except ValueError as e:  # not JSON, or not UTF-8 text
        raise UserError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} must hold a JSON object of TrainConfig fields, got {type(value).__name__}")
    return value


def _check_motion(cfg, data_dirs) -> None:
    """Teacher recordings must move the way the model's config says (game.motion)."""
    from envs.shards import read_manifest
    from world.config import from_preset

    if cfg.init_from:
        from demos.source import checkpoint_game

        try:
            want = checkpoint_game(cfg.init_from).motion
        except (OSError, ValueError) as e:  # a missing file, bad JSON, a bad config field
            raise UserError(f"--init-from {cfg.init_from}: no readable checkpoint config.json ({e})") from None
    else:
        want = from_preset(cfg.preset, **cfg.model).game.motion
    model = f"the checkpoint {cfg.init_from}" if cfg.init_from else f"the {cfg.preset!r} model"
    for d in data_dirs:
        manifest = read_manifest(d)
        if "Teacher" in str(manifest.get("env_id", "")) and manifest.get("motion", "smooth") != want:
            raise UserError(f"{d} was recorded with --motion {manifest.get('motion', 'smooth')}, but "
                            f"{model}'s game.motion is {want!r}: record with --motion {want}")


def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="measure speed and write JSON (teacher game or world model)",
        description="Benchmarks are commands, not tests: run one, keep the JSON, "
        "and compare figures measured in the same run.",
    )
    p.add_argument("--target", choices=["teacher", "model", "session", "backends", "env", "train", "learn", "proxy"],
                   default="session",
                   help="session: a world held to the --fps budget as a player gets it (default); "
                   "model: the bare streaming step; backends: --backends side by side, interleaved, "
                   "with ratios to torch; teacher: the procedural game's frames/s; "
                   "env: World-v0 env steps/s, single env and vector env at B = 1, 8, 32; "
                   "train: training frames/s and GFLOP/s per stage vs the machine's matmul rate; "
                   "learn: train stage 1 for --minutes of CPU on --data, then measure on proxy seeds; "
                   "proxy: measure a trained --checkpoint on the learn bench's proxy seeds (no training)")
    p.add_argument("--data", nargs="+", default=None, help="learn: recorded dataset directories")
    p.add_argument("--minutes", type=float, default=30.0, help="learn: CPU-minutes of stage 1 (default 30)")
    p.add_argument("--lever", default=None,
                   help="learn, train: TrainConfig fields as a JSON object or file, e.g. "
                   "'{\"context_noise_max\": 0.3}' or '{\"model\": {\"dit\": {\"prev_frame\": false, "
                   "\"prediction\": \"velocity\"}}}'")
    p.add_argument("--tokenizer-from", default="checkpoints/tiny",
                   help="learn: checkpoint whose (frozen) tokenizer the bench trains on (default checkpoints/tiny)")
    p.add_argument("--out", default=None, help="learn: keep the bench's training run in this directory")
    p.add_argument("--horizons", default="1,4,16,64", help="proxy: free-rollout horizons (default 1,4,16,64)")
    p.add_argument("--proxy-seeds", type=int, default=4, help="learn, proxy: proxy worlds measured (default 4)")
    p.add_argument("--strip", type=Path, default=None, help="proxy: also write a PNG of true vs generated frames")
    p.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"],
                   choices=["torch", "compile", "onnxruntime", "tensorrt"],
                   help="backends: which to compare (default torch onnxruntime); one that cannot run "
                   "here falls back with a warning and is reported under the name asked for")
    p.add_argument("--device", default="cpu", help="backends: cpu or cuda[:i] (default cpu)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="backends: ONNX directory from `echo-infinity export` (default: exported on "
                   "first use into the per-model cache)")
    p.add_argument("--backend", default="torch", choices=["torch", "compile", "onnxruntime", "tensorrt"],
                   help="session: the backend the session steps with (default torch)")
    p.add_argument("--fps", type=float, default=20.0, help="session: the frame budget (default 20)")
    p.add_argument("--pace", action="store_true",
                   help="session: sleep to each frame's deadline and count misses (a real-time run)")
    p.add_argument("--switch-every", type=int, default=0,
                   help="session: switch the prompt every N frames (re-caching the window) and report "
                   "what a switch costs under \"switch\" (default 0: never)")
    p.add_argument("--frames", type=int, default=20_000,
                   help="frames to step (default 20000; env: steps per configuration, try 100)")
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
    elif args.target == "env":
        from envs.bench import bench_env

        if not args.random_init and args.checkpoint is None:
            raise UserError("--target env needs --checkpoint DIR or --random-init")
        result = bench_env(checkpoint=None if args.checkpoint is None else str(args.checkpoint),
                           random_init=args.random_init, frames=args.frames, preset=args.preset,
                           threads=args.threads, seed=args.seed, progress=not args.no_progress)
    elif args.target == "session":
        from runtime.bench import run_session_bench

        if not args.random_init and args.checkpoint is None:
            raise UserError("--target session needs --checkpoint DIR or --random-init")
        runs = [run_session_bench(checkpoint=None if args.checkpoint is None else str(args.checkpoint),
                                  frames=args.frames, fps=args.fps, pace=args.pace, policy=policy, seed=args.seed,
                                  switch_every=args.switch_every,
                                  backend=args.backend, device=args.device,
                                  threads=args.threads, random_init=args.random_init, preset=args.preset,
                                  progress=not args.no_progress)
                for policy in args.policy]
        result = runs[0] if len(runs) == 1 else {"runs": runs}
    elif args.target == "backends":
        result = _bench_backends(args)
    elif args.target == "learn":
        from envs.learn_bench import parse_lever, run_learn_bench

        if not args.data:
            raise UserError("--target learn needs --data DIR [DIR ...] (recorded with `echo-infinity record`)")
        try:
            result = run_learn_bench(args.data, args.minutes, args.tokenizer_from, parse_lever(args.lever),
                                     seeds=args.proxy_seeds, threads=args.threads, seed=args.seed, out=args.out,
                                     progress=not args.no_progress)
        except (ValueError, FileNotFoundError) as e:
            raise UserError(str(e)) from None
    elif args.target == "proxy":
        from envs.learn_bench import run_proxy

        if args.checkpoint is None:
            raise UserError("--target proxy needs --checkpoint DIR")
        try:
            horizons = tuple(int(h) for h in args.horizons.split(","))
        except ValueError:
            raise UserError(f"--horizons must be comma-separated integers, got {args.horizons!r}") from None
        if not horizons or min(horizons) < 1 or args.proxy_seeds < 1:
            raise UserError("--horizons must be >= 1 and --proxy-seeds >= 1")
        try:
            result = run_proxy(str(args.checkpoint), args.proxy_seeds, horizons, args.threads,
                               None if args.strip is None else str(args.strip), progress=not args.no_progress)
        except (ValueError, FileNotFoundError) as e:
            raise UserError(str(e)) from None
    elif args.target == "train":
        from envs.learn_bench import parse_lever
        from world.train_bench import run_train_bench

        try:
            result = run_train_bench(parse_lever(args.lever), threads=args.threads, seed=args.seed)
        except ValueError as e:
            raise UserError(str(e)) from None
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


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="measure a checkpoint against the teacher game (fidelity, revisit memory, prompts, stability)",
        description="Play held-out teacher seeds and compare the model's frames with the true ones: "
        "PSNR/SSIM by horizon, revisit PSNR per memory policy, prompt adherence (biome classifier), "
        "stability over a long rollout, ablations. JSON names are documented in envs/evaluate/__init__.py.",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="directory with model.safetensors + config.json")
    p.add_argument("--seeds", type=int, default=None, help="eval seeds (default 8; --quick 2)")
    p.add_argument("--proxy", action="store_true",
                   help="play the proxy seeds (70000 + i), the ones settings are chosen on, "
                   "instead of the held-out eval seeds (90000 + i)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps per frame (default: the checkpoint's)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (default: the checkpoint's sampler.guidance; 1 = off)")
    p.add_argument("--switch-guidance", type=float, default=None,
                   help="guidance scale for the frames after a prompt switch (default: the checkpoint's "
                   "sampler.switch_guidance, else --guidance)")
    p.add_argument("--stability-frames", type=int, default=None,
                   help="frames of the free random-action rollout (default 10000; --quick 200)")
    p.add_argument("--heads-worlds", type=int, default=None,
                   help="worlds of the reward/done heads section (default 32; --quick 2)")
    p.add_argument("--quick", action="store_true",
                   help="smoke-test settings: 2 seeds, horizons up to 16, 200 stability frames, small classifier")
    p.add_argument("--skip", nargs="+", default=[], metavar="SECTION",
                   choices=["fidelity", "revisit", "adherence", "stability", "ablations", "heads"],
                   help="sections not to run: fidelity revisit adherence stability ablations heads")
    p.add_argument("--compare-checkpoint", type=Path, default=None,
                   help="a second checkpoint (e.g. trained with memory.rope='absolute'): fidelity, revisit "
                   "and stability on it too, reported under ablations.rope")
    p.add_argument("--text-encoder", choices=["auto", "minilm", "hash"], default="auto",
                   help="prompt encoder (default auto: the one in trainer.json beside the weights, else minilm)")
    p.add_argument("--cache-dir", type=Path, default=Path("runs/eval_cache"),
                   help="where the biome classifier's weights are cached (default runs/eval_cache)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    p.add_argument("--report", type=Path, default=None, help="write report.md and PNGs into this directory")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_run_eval)


def _run_eval(args) -> int:
    import torch

    from envs.evaluate import EvalConfig, run_eval, save_json, write_report

    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    given = {"seeds": args.seeds, "stability_frames": args.stability_frames, "heads_worlds": args.heads_worlds}
    ev = (EvalConfig.quick_config if args.quick else EvalConfig)(
        **{k: v for k, v in given.items() if v is not None},
        steps=args.steps, guidance=args.guidance, switch_guidance=args.switch_guidance, proxy=args.proxy,
        skip=tuple(args.skip), text_encoder=args.text_encoder,
        cache_dir=str(args.cache_dir), progress=not args.no_progress)
    result, artifacts = run_eval(args.checkpoint, ev, args.compare_checkpoint)
    if args.json:
        save_json(result, args.json)
    if args.report:
        write_report(result, artifacts, args.report)
    summary = {k: result[k] for k in ("psnr_by_horizon", "revisit_psnr", "prompt_adherence", "stable", "seconds")}
    print(json.dumps(summary, indent=1))
    return 0


def _bench_backends(args) -> dict:
    import torch

    from engines.backend import BackendUnavailable
    from engines.bench import bench_backends
    from world.config import from_preset
    from world.model import WorldModel

    if not args.random_init and args.checkpoint is None:
        raise UserError("--target backends needs --checkpoint DIR or --random-init")
    runs = []
    for policy in args.policy:
        if args.random_init:
            torch.manual_seed(args.seed)  # randomize_ perturbs the seeded init: same weights every run
            model = WorldModel(from_preset(args.preset, memory={"policy": policy})).randomize_(args.seed)
        else:
            model = WorldModel.load(args.checkpoint, policy=policy)
        try:
            runs.append(bench_backends(model.to(args.device), args.backends, frames=args.frames, steps=args.steps,
                                       batch=args.batch, seed=args.seed, threads=args.threads, device=args.device,
                                       cache_dir=args.cache_dir, warn=lambda m: print(m, file=sys.stderr),
                                       progress=not args.no_progress))
        except BackendUnavailable as e:
            raise UserError(str(e)) from e
    return runs[0] if len(runs) == 1 else {"runs": runs}


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export the per-frame graphs to ONNX (static shapes) for the onnxruntime/tensorrt backends",
        description="Write dit_context.onnx, dit_step.onnx, memory_update.onnx (policies with memory), "
        "decoder.onnx and manifest.json (model hash, batch, shapes, opset, torch version) into --out. "
        "Backends given this directory check that it belongs to their model and batch.",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="directory with model.safetensors + config.json")
    p.add_argument("--out", type=Path, required=True, help="directory to write the graphs into")
    p.add_argument("--batch", type=int, default=1, help="worlds stepped together (static; default 1)")
    p.add_argument("--policy", default=None, choices=["window", "sink", "compress", "evolving"],
                   help="run the checkpoint's weights under another memory policy (as play/bench --policy)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_export)


def _run_export(args) -> int:
    from engines.onnx_export import export_onnx, read_manifest
    from world.model import WorldModel

    if args.batch < 1:
        raise UserError(f"--batch must be >= 1, got {args.batch}")
    model = WorldModel.load(args.checkpoint, policy=args.policy)
    out = export_onnx(model, args.out, batch=args.batch, opset=args.opset, checkpoint=args.checkpoint,
                      progress=not args.no_progress)
    manifest = read_manifest(out)
    files = ", ".join(g["file"] for g in manifest["graphs"].values())
    print(f"exported {files} + manifest.json to {out} (batch {args.batch}, opset {args.opset}, "
          f"model {manifest['model_hash'][:16]})")
    return 0


def _add_doctor(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="show which backends this machine can run, and why not the others",
        description="Versions of torch, CUDA, onnxruntime (and its execution providers), TensorRT, "
        "and for each device the backends that can run (--backend for play/bench/session).",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run_doctor)


def _run_doctor(args) -> int:
    from engines.doctor import format_report, report

    info = report()
    print(json.dumps(info, indent=2) if args.json else format_report(info))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="echo-infinity",
        description="Echo-Infinity: an endless world drawn frame by frame by a video diffusion "
        "transformer with evolving memory. Run a subcommand with --help for its options.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_play, _add_kiosk, _add_record, _add_train, _add_codebook, _add_passability, _add_restyle,
                _add_bench, _add_eval, _add_export, _add_doctor):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from world.allocator import keep_freed_memory

    keep_freed_memory()  # before the first big tensor: freed activations are reused, not re-zeroed
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
