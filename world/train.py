"""Training, top to bottom: tokenizer, stage 1 (parallel clips), stage 2 (streamed clips).

Readable in one pass, cleanrl style; every knob is a field of `TrainConfig`.

Stage 0, tokenizer: the per-frame autoencoder learns to reconstruct teacher
  frames (MSE), then its latent is rescaled to unit variance (folded into the
  weights, so nothing else changes) and frozen.
Stage 1, teacher-forced clips inside the window: the block-causal parallel
  forward denoises every frame of a clip at once, each frame at its own noise
  level (diffusion forcing), context frames slightly noised, captions dropped
  at random so the model also runs unconditionally. Reward and episode-end
  heads learn from the teacher's rewards and terminations.
Stage 2, streamed clips several windows long, through the *same* streaming
  code as inference (`prepare` / `velocity` / `commit`): frames leave the
  window and enter memory, gradients flow back through memory updates
  (truncated after `memory.bptt_updates`), part of the context is the model's
  own sampled frames (self-rollout, against drift; the clip's last frames can
  run free on them, scored only where the truth is predictable), and frames
  that return to a place seen before the window weigh more (that is what
  memory is for).

The data comes from the caller as `batches(clip_len, batch, switch_clips=0) ->
iterator of dicts` (see `envs.dataset.clip_batches`: frames uint8 [B, L, H, W, 3],
actions/rewards/terminated [B, L], positions [B, L, 2], captions [B][L]), so
`world` stays independent of where frames come from.

Checkpoints: model.safetensors + config.json (the model), optimizer.safetensors
+ trainer.json (resume). Nothing is pickled; resuming never runs code.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from . import codebook, copy_gate, passability, precision, sampler, spawn
from .actions import MOVES, move_neighbours
from .checkpoint import CheckpointError, read_safetensors
from .config import GameConfig, from_preset
from .model import WorldModel
from .prev_frame import CENTRE, copyable, shift_labels
from .text import build_text_encoder
from .train_config import STAGE_PREFIX, STAGES, TrainConfig

Batches = Callable[..., Iterator[dict]]
"""batches(clip_len, batch, switch_clips=0) -> endless collated clips (envs.dataset.clip_batches)."""
# --------------------------------------------------------------------------------------------
# Losses, one module each so DDP sees one forward per backward.


class TokenizerLoss(nn.Module):
    def __init__(self, model: WorldModel):
        super().__init__()
        self.tokenizer = model.tokenizer

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """frames uint8 [B, H, W, 3] -> reconstruction MSE in [-1, 1] units."""
        loss = self.tokenizer.reconstruction_loss(frames)
        return {"loss": loss, "psnr": 10 * torch.log10(4.0 / loss.detach().clamp_min(1e-10))}


def clip_context(model: WorldModel, state, start: torch.Tensor | None):
    """The stream context of a training clip's next frame. A clip's world state counts frames
    from the clip's start (its sink holds the clip's first frame, as at play time), while
    dit.clock reads the frame's index in its episode: start [B] moves the clock there."""
    ctx = model.prepare(state)
    if start is not None:
        ctx.clock = ctx.clock + start[:, None]
    return ctx


def shift_actions(batch: dict, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-frame conditioning: frame j is caused by action j-1 (frame 0 by NOOP, as at reset).

    -> action_in int64 [B, L], reward_in, done_in float [B, L] (targets of the heads).
    """
    a, r, d = batch["actions"].to(device), batch["rewards"].to(device), batch["terminated"].to(device)
    zero = torch.zeros_like(a[:, :1])
    action_in = torch.cat([zero, a[:, :-1]], 1)
    reward_in = torch.cat([zero.float(), r[:, :-1].float()], 1)
    done_in = torch.cat([zero.float(), d[:, :-1].float()], 1)
    return action_in, reward_in, done_in


class Stage1Loss(nn.Module):
    """Teacher-forced clip, every frame at its own noise level (diffusion forcing)."""

    def __init__(self, model: WorldModel, cfg: TrainConfig):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.classify = model.cfg.dit.outcome_heads == "centre"
        self.copy_ok = copy_mask(model)

    def forward(self, x0: torch.Tensor, action_in, reward_in, done_in, prompts, gen,
                shift: torch.Tensor | None = None, start: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """x0 [B, T, N, C] clean latent tokens; prompts: list of B PromptEmbedding;
        shift [B, T] the camera's true moves (`shift_labels`; models with dit.prev_shift);
        start [B] where each clip begins in its episode (models with dit.clock)."""
        B, T = x0.shape[:2]
        dev, cfg = x0.device, self.cfg
        t = torch.rand(B, T, generator=gen, device=dev)  # [B, T] independent per frame
        eps = torch.randn(x0.shape, generator=gen, device=dev)
        if cfg.s1_streams == 1:  # diffusion forcing: a share of frames near-clean, as context at play time
            clean = torch.rand(B, T, generator=gen, device=dev) < cfg.s1_clean_share
            t = torch.where(clean, t * cfg.context_noise_max, t)
            x_ctx = t_ctx = None
        else:
            t_ctx = torch.rand(B, T, generator=gen, device=dev) * cfg.context_noise_max
            x_ctx = sampler.add_noise(x0, torch.randn(x0.shape, generator=gen, device=dev), t_ctx)
        pred, reward, done, copy, shift_logits = self.model.forward_parallel(
            sampler.add_noise(x0, eps, t), t, action_in, x_ctx, 0.0 if t_ctx is None else t_ctx, prompts,
            with_copy=True, x_clean=x0, shift=shift, start=start)
        flow = F.mse_loss(pred, sampler.target(self.model.cfg.dit.prediction, x0, eps))
        rew, end = head_losses(reward, done, reward_in, done_in, cfg.event_weight, self.classify)
        loss = flow + self.cfg.reward_weight * rew + self.cfg.done_weight * end
        out = {"flow": flow.detach(), "reward": rew.detach(), "done": end.detach()}
        if copy is not None and cfg.copy_loss_weight > 0:
            # The copy path's own x0 against the clean frame, after the first chunk (which has
            # no previous frame): the mix learns to pick the neighbour the action moved into
            # place itself, not only through what the DiT's residual leaves over.
            c = self.model.cfg.memory.chunk_frames
            copy_loss = F.mse_loss(copy[:, c:], x0[:, c:])
            loss = loss + cfg.copy_loss_weight * copy_loss
            out["copy"] = copy_loss.detach()
        if shift_logits is not None and shift is not None:
            shift_loss, out["shift_acc"] = shift_head_loss(shift_logits, shift, action_in, cfg.shift_blocked_weight,
                                                           self.copy_ok)
            loss = loss + aux_weight(self.model, cfg) * shift_loss
            out["shift"] = shift_loss.detach()
        return {"loss": loss, **out}


def aux_weight(model: WorldModel, cfg: TrainConfig) -> float:
    """The weight of the copy path's move loss: the shift head's, or the per-token mix's."""
    return cfg.shift_loss_weight if model.cfg.dit.prev_shift else cfg.mix_loss_weight


def move_labels_needed(model: WorldModel, cfg: TrainConfig) -> bool:
    """Does training need the camera's true moves (`shift_labels`)?"""
    return model.cfg.dit.prev_frame and (model.cfg.dit.prev_shift or cfg.mix_loss_weight > 0)


def head_losses(reward: torch.Tensor, done: torch.Tensor, reward_in: torch.Tensor, done_in: torch.Tensor,
                event_weight: float = 1.0, classify: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward head and done head (cross-entropy) against the recorded reward and episode end,
    any matching shapes. The reward head regresses the reward (squared error) or, `classify`
    (dit.outcome_heads 'centre'), is a pickup logit against reward > 0.5 (cross-entropy).
    Frames with a pickup or an end weigh `event_weight`: gem pickups are ~0.6% of recorded
    frames and hazard ends fewer (issue 17's heads eval)."""
    pickup = (reward_in > 0.5).to(reward.dtype)
    if classify:
        rew = F.binary_cross_entropy_with_logits(reward, pickup, pos_weight=reward.new_tensor(event_weight))
    else:
        rew = ((1 + (event_weight - 1) * pickup) * (reward - reward_in).pow(2)).mean()
    end = F.binary_cross_entropy_with_logits(done, done_in, pos_weight=done.new_tensor(event_weight))
    return rew, end


def copy_mask(model: WorldModel) -> torch.Tensor:
    """bool [9, N]: which tokens the per-token mix loss labels with each move (`prev_frame.copyable`
    around the game's fixed tokens, `GameConfig.fixed_tokens`), made once per loss module."""
    grid = model.cfg.tokenizer.grid_size
    return copyable(grid, model.cfg.game.fixed_tokens(grid))


def shift_head_loss(logits: torch.Tensor, labels: torch.Tensor | None, action: torch.Tensor,
                    blocked_weight: float = 1.0, copy_ok: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, T, 9] (the shift head) or [B, T, N, 9] (the per-token mix: each token labelled
    with the frame's move where `copy_ok` [9, N] says it is a copy of that neighbour, `copy_mask`;
    default the teacher's, `copyable` around the grid's centre), labels [B, T] (-1:
    unknown), action [B, T] the frame's action -> (cross-entropy, accuracy of the argmax).
    Blocked moves (a move action, the camera in place) weigh `blocked_weight`: they are a few
    percent of the recorded moves, and a head that follows the action alone is right on all the
    others."""
    if labels is None:
        raise ValueError("a model with dit.prev_shift trains on the teacher's camera moves: pass shift labels")
    if logits.dim() == 4:  # per token: unlabel the tokens that are no copy, fold the rest into the frames
        B, T, N, _ = logits.shape
        g = math.isqrt(N)
        if copy_ok is None:
            copy_ok = copyable(g, GameConfig().fixed_tokens(g))
        ok = copy_ok.to(logits.device)  # [9, N]
        per_token = labels[:, :, None].expand(B, T, N)
        labels = torch.where(ok[labels.clamp_min(0)] & (per_token >= 0), per_token, -1).flatten(1, 2)  # [B, T * N]
        logits, action = logits.flatten(1, 2), action.repeat_interleave(N, 1)  # [B, T * N, 9], [B, T * N]
    known = labels >= 0
    if not bool(known.any()):
        zero = logits.sum() * 0.0
        return zero, zero.detach()
    blocked = (labels == CENTRE) & torch.isin(action, torch.tensor(MOVES, device=action.device))
    w = torch.where(blocked, blocked_weight, 1.0)[known]
    ce = (F.cross_entropy(logits[known], labels[known], reduction="none") * w).sum() / w.sum()
    acc = (logits[known].argmax(-1) == labels[known]).float().mean()
    return ce, acc


def revisit_weights(positions: torch.Tensor, window: int, weight: float, near: int = 4, away: int = 32) -> torch.Tensor:
    """[B, L, 2] positions -> [B, L] loss weights: `weight` where the player is back
    (within `near` px) at a place last seen >= `window` frames ago, after going
    at least `away` px from it in between; 1 elsewhere."""
    B, L, _ = positions.shape
    p = positions.float()
    dist = (p[:, :, None] - p[:, None, :]).abs().amax(-1)  # [B, L(i), L(j)] L-inf distance
    w = torch.ones(B, L, device=positions.device)
    for j in range(window, L):
        # farthest distance from p_j reached after frame i, for every earlier i: a suffix max
        far_after = dist[:, : j, j].flip(1).cummax(1).values.flip(1)  # [B, j]
        seen = (dist[:, : j - window + 1, j] <= near) & (far_after[:, : j - window + 1] >= away)
        w[:, j] = torch.where(seen.any(1), weight, 1.0)
    return w


def free_run_mask(positions: torch.Tensor, free_start: int, grid: int, pixels_per_token: float) -> torch.Tensor:
    """[B, L, 2] positions (base pixels) -> [B, L, N] 1/0: which tokens of each frame stage 2
    scores against the truth when frames `free_start`.. run on the model's own samples.

    A token is left out (0) where it shows a world tile that the model itself drew first: a
    tile some free-running frame before it showed and no true context frame did. Those tiles
    the model invented, and the truth draws them differently; scoring them would teach it to
    forget what it drew. Tiles the true frames showed (seen content) and tiles no frame has
    shown yet (new content, as in teacher forcing) are kept. Exact for tile motion, where a
    token is a tile; smooth motion rounds the view to whole tokens.
    """
    B, L, _ = positions.shape
    origin = torch.div(positions.flip(-1).float(), pixels_per_token, rounding_mode="floor").long()  # [B, L, 2] (y, x)
    rc = torch.stack(torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij"), -1).view(-1, 2)
    tiles = origin[:, :, None] + rc.to(positions.device)  # [B, L, N, 2] the world tile of each token
    rel = tiles[:, :, :, None] - origin[:, None, None]  # [B, L(j), N, L(k), 2]
    shown = ((rel >= 0) & (rel < grid)).all(-1)  # [B, j, N, k] frame k showed frame j's token's tile
    k = torch.arange(L, device=positions.device)
    by_truth = (shown & (k < free_start)).any(-1)  # [B, L, N]
    before = k[None, :] < k[:, None]  # [j, k]: k before j
    by_model = (shown & (k >= free_start) & before[None, :, None]).any(-1)
    return (~(by_model & ~by_truth)).float()


RARITY_CAP = 10.0
"""`rarity_weights`: no token weighs more than this many times a token of the batch's most
common code, so a code seen once in a batch cannot take the whole loss."""


def rarity_weights(idx: torch.Tensor, num_codes: int, power: float) -> torch.Tensor:
    """idx [B, L, N] each clean token's nearest code -> [B, L, N] loss weights, mean 1, each token's
    ~ p^-power with p the share of the batch's tokens on its code, at most RARITY_CAP times the
    most common code's: objects, a few tokens a frame, weigh more than the ground."""
    share = torch.bincount(idx.flatten(), minlength=num_codes).float() / idx.numel()  # [K]
    w = (share[idx] / share.max()).pow(-power).clamp(max=RARITY_CAP)  # 1 on the most common code
    return w / w.mean()


def fixed_change_weights(idx: torch.Tensor, fixed: list[int], weight: float) -> torch.Tensor:
    """idx [B, L, N] each clean token's nearest code -> [B, L, N] loss weights: `weight` on the
    fixed tokens whose code differs from the frame before's (`TrainConfig.fixed_change_weight`), else 1."""
    changed = torch.zeros_like(idx, dtype=torch.bool)
    changed[:, 1:] = idx[:, 1:] != idx[:, :-1]
    is_fixed = torch.zeros(idx.shape[-1], dtype=torch.bool, device=idx.device)
    is_fixed[fixed] = True
    return torch.where(changed & is_fixed, weight, 1.0)


class Stage2Loss(nn.Module):
    """A clip streamed frame by frame through the inference code path, memory included."""

    def __init__(self, model: WorldModel, cfg: TrainConfig):
        super().__init__()
        self.model, self.cfg = model, cfg
        self.classify = model.cfg.dit.outcome_heads == "centre"
        self.copy_ok = copy_mask(model)

    def forward(self, x0: torch.Tensor, action_in, reward_in, done_in, prompts, weights, gen,
                switches: dict[int, list] | None = None, shift: torch.Tensor | None = None,
                start: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """x0 [B, L, N, C]; weights [B, L, N] per-token loss weights (revisit weight x free_run_mask);
        prompts: B PromptEmbedding in force at frame 0; switches: {frame j: B PromptEmbedding in
        force from j on}, for the frames where some world's caption changes; shift [B, L] the
        camera's true moves (models with dit.prev_shift); start [B] where each clip begins in its
        episode (models with dit.clock)."""
        model, cfg = self.model, self.cfg
        if cfg.s2_train == "gate":
            return self.gate_forward(x0, action_in, prompts, gen, switches, start)
        B, L = x0.shape[:2]
        dev = x0.device
        free_start = L - cfg.s2_free_frames  # frames from here on keep the model's own sample
        state = model.init_state(B, prompts, seed=0)
        kind = model.cfg.dit.prediction
        flow_sum = rew_sum = end_sum = shift_sum = x0.new_zeros(())
        for j in range(L):
            if switches and j in switches:  # the caption changed: switch as a player does, re-caching the window
                for name in ("prompt_pooled", "prompt_tokens", "prompt_mask"):  # earlier frames' graphs keep theirs
                    setattr(state, name, getattr(state, name).clone())
                model.set_prompt(state, switches[j])
            ctx = clip_context(model, state, start)
            a = action_in[:, j : j + 1]  # [B, 1]
            target = x0[:, j : j + 1]  # [B, 1, N, C]
            t = torch.rand(B, 1, generator=gen, device=dev)
            eps = torch.randn(target.shape, generator=gen, device=dev)
            moved = None if shift is None else shift[:, j : j + 1]
            pred, _, _, logits = model.denoise(state, ctx, sampler.add_noise(target, eps, t), t, a, moved, with_copy=True)
            if logits is not None and moved is not None:
                shift_sum = shift_sum + shift_head_loss(logits, moved, a, cfg.shift_blocked_weight, self.copy_ok)[0]
            per_token = (pred - sampler.target(kind, target, eps)).pow(2).mean(-1)[:, 0]  # [B, N]
            flow_sum = flow_sum + (per_token * weights[:, j]).mean()
            # What the window keeps of this frame: the truth, or (self-rollout, free run) the
            # model's own sample.
            context = target
            if j > 0 and (cfg.self_rollout > 0 or j >= free_start):
                own = (torch.rand(B, generator=gen, device=dev) < cfg.self_rollout) | (j >= free_start)  # [B]
                if bool(own.any()):
                    with torch.no_grad():
                        noise = torch.randn(target.shape, generator=gen, device=dev) * cfg.self_rollout_temperature
                        sample = model.sample(state, ctx, a, 2, noise)
                    context = torch.where(own[:, None, None, None], sample, target)
            reward, done = self.commit_noised(state, ctx, context, a, gen)
            rew, end = head_losses(reward[:, 0], done[:, 0], reward_in[:, j], done_in[:, j], cfg.event_weight,
                                   self.classify)
            rew_sum, end_sum = rew_sum + rew, end_sum + end
            # Gradients reach the past through memory updates only (truncated BPTT in the
            # model); the cache keeps values, not graphs.
            state.cache.k = state.cache.k.detach().clone()
            state.cache.v = state.cache.v.detach().clone()
        flow, rew, end = flow_sum / L, rew_sum / L, end_sum / L
        loss = flow + cfg.reward_weight * rew + cfg.done_weight * end + aux_weight(model, cfg) * shift_sum / L
        out = {"loss": loss, "flow": flow.detach(), "reward": rew.detach(), "done": end.detach()}
        if shift is not None:
            out["shift"] = (shift_sum / L).detach()
        return out

    def commit_noised(self, state, ctx, context: torch.Tensor, action: torch.Tensor, gen):
        """Commit the frame the window keeps, context [B, 1, N, C], noised to a level drawn from
        U(0, context_noise_max) as training augments it -> the heads' (reward, done)."""
        t_c = torch.rand(context.shape[0], 1, generator=gen, device=context.device) * self.cfg.context_noise_max
        noised = sampler.add_noise(context, torch.randn(context.shape, generator=gen, device=context.device), t_c)
        return self.model.commit(state, ctx, noised, action, level=t_c[:, 0], clean=context)

    def gate_forward(self, x0: torch.Tensor, action_in, prompts, gen,
                     switches: dict[int, list] | None = None, start: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """`s2_train` 'gate': the copy gate learns, the world model frozen. Every frame is sampled
        as at play time (the sampler's steps, noise x self_rollout_temperature); the gate reads
        that pass and learns which of its 10 choices land nearest the recorded frame
        (`copy_gate.targets`); the window keeps the model's own frame (with the gate's choices)
        with probability self_rollout, else the truth."""
        model, cfg = self.model, self.cfg
        B, L = x0.shape[:2]
        dev = x0.device
        grid = model.cfg.tokenizer.grid_size
        state = model.init_state(B, prompts, seed=0)
        loss_sum, counts = x0.new_zeros(()), {}
        for j in range(L):
            with torch.no_grad():
                if switches and j in switches:
                    model.set_prompt(state, switches[j])
                ctx = clip_context(model, state, start)
                a = action_in[:, j : j + 1]  # [B, 1]
                target = x0[:, j : j + 1]  # [B, 1, N, C]
                noise = torch.randn(target.shape, generator=gen, device=dev) * cfg.self_rollout_temperature
                drawn, hidden = model.denoise_chunk(state, ctx, a, noise=noise)
                nearest, prev = model.tokenizer.snap(drawn), model.tokenizer.snap(state.prev_clean)
                has_prev = state.prev_level < 1  # [B]
                correct = copy_gate.targets(target, nearest, prev, grid, has_prev)
            logits = model.dit.copy_gate(hidden, drawn, prev, nearest)  # [B, 1, N, 10], grad into the gate only
            loss_sum = loss_sum + copy_gate.gate_loss(logits, correct)
            choice = copy_gate.choose(logits.detach(), model.cfg.sampler.copy_gate, has_prev)  # as `WorldModel.snap`
            for k, v in copy_gate.gate_counts(choice, correct).items():
                counts[k] = counts.get(k, 0.0) + v
            with torch.no_grad():
                context = target
                own = torch.rand(B, generator=gen, device=dev) < cfg.self_rollout  # [B]
                if j > 0 and bool(own.any()):
                    sample = model.snap(drawn, state, hidden, a)
                    context = torch.where(own[:, None, None, None], sample, target)
                self.commit_noised(state, ctx, context, a, gen)
        n = counts["tokens"]
        # copy_only: tokens only a copy gets right (what the gate is for); copy_recall: the share of
        # them the gate gets right; copied / wrong_copies: tokens the gate copies, and copies wrong
        return {"loss": loss_sum / L, "copy_only": counts["copy_only"] / n,
                "copy_recall": counts["fixed"] / counts["copy_only"].clamp_min(1), "copied": counts["copied"] / n,
                "wrong_copies": counts["wrong"] / n}


class LatentCache:
    """Latent tokens of every recorded frame, encoded once by the frozen tokenizer.

    After the tokenizer stage the same frames come back in clip after clip;
    encoding them again cost ~3% of a `tiny` stage-1 step (docs/RESULTS.md),
    more with a larger tokenizer. Frames are keyed by
    (episode, index), which the dataset's batches carry; a batch without them
    (synthetic data) is encoded as it comes. fp32, so a cached latent is exactly
    the one encoding would give: ~8 KB a frame at `tiny` (0.5 GB for 60,000 frames).
    """

    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor]):
        self.encode = encode  # uint8 [n, H, W, 3] -> [n, N, C]
        self.store: dict[tuple[str, int], torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, batch: dict, device) -> torch.Tensor:
        """batch["frames"] uint8 [B, L, H, W, 3] -> latents [B, L, N, C] on `device`."""
        frames = batch["frames"]
        B, L = frames.shape[:2]
        flat = frames.reshape(B * L, *frames.shape[2:])
        if "episode" not in batch or "start" not in batch:
            x0 = self.encode(flat.to(device))
            return x0.view(B, L, *x0.shape[1:])
        keys = [(batch["episode"][b], int(batch["start"][b]) + i) for b in range(B) for i in range(L)]
        first = {}
        for j, k in enumerate(keys):
            if k not in self.store:
                first.setdefault(k, j)
        if first:
            new = self.encode(flat[list(first.values())].to(device))
            self.store.update(zip(first, new))
        return torch.stack([self.store[k] for k in keys]).view(B, L, *self.store[keys[0]].shape)


# --------------------------------------------------------------------------------------------
# The loop.


def lr_at(step: int, total: int, base: float, warmup: int, progress: float | None = None) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 10% by the end of the stage.
    progress: the share of the stage done, when the stage is budgeted in CPU time (else steps)."""
    if step < warmup:
        return base * (step + 1) / warmup
    if progress is None:
        progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def calibrate_latent_scale(model: WorldModel, frames: torch.Tensor) -> float:
    """Rescale the tokenizer so latent tokens have unit std, folded into its weights.

    The last encoder conv is divided and the first decoder conv multiplied by
    the same factor, so reconstructions are unchanged and no extra constant
    has to travel with the checkpoint.
    """
    tok = model.tokenizer
    std = float(tok.encode(frames).std())
    enc_out, dec_in = tok.encoder[-1], tok.decoder[0]
    enc_out.weight.div_(std)
    enc_out.bias.div_(std)
    dec_in.weight.mul_(std)
    return std


class Trainer:
    """Runs the three stages with checkpoints, metrics and resume."""

    def __init__(self, cfg: TrainConfig, batches: Batches, device: str | torch.device = "cpu",
                 rank: int = 0, world_size: int = 1, progress: bool = True,
                 recordings: Callable[[], Iterable[dict]] | None = None):
        """recordings: every recorded episode once (envs.dataset.whole_episodes), what the
        passability table of a model with game.passability counts (clips would see a few
        recordings only: the loader holds four at a time)."""
        cfg.validate()
        self.cfg, self.batches, self.device, self.recordings = cfg, batches, torch.device(device), recordings
        self.rank, self.world_size = rank, world_size
        self.progress = progress and rank == 0
        self.out = Path(cfg.out)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 1000 + rank)
        torch.manual_seed(cfg.seed)  # identical init on every rank (DDP also broadcasts)
        self.model = WorldModel(from_preset(cfg.preset, **cfg.model)).to(self.device)
        self.text = build_text_encoder(cfg.text_encoder, cache_size=8192)
        self.done: dict[str, int] = {s: 0 for s in STAGES}  # steps finished per stage
        self.cpu_seconds: dict[str, float] = {s: 0.0 for s in STAGES}  # CPU time spent per stage
        self.latent_std: float | None = None
        warm, self.passability_due = None, False
        if cfg.init_from:  # fine-tune: start stage 2 from a trained checkpoint
            if cfg.model:  # ... in a changed architecture: shared weights carried over, new ones fresh
                self.model, fresh, dropped = WorldModel.warm_start(cfg.init_from, cfg.model, self.device)
                warm = {"event": "warm_start", "fresh": fresh, "dropped": dropped}
                # new tables: counted before stage 2
                self.passability_due = bool({"passability.blocked", "passability.ends", "spawn.rate"} & set(fresh))
            else:
                self.model = WorldModel.load(cfg.init_from, device=self.device)
            self.done.update(tokenizer=cfg.tok_steps, stage1=cfg.s1_steps)
            self.latent_std = 1.0  # the checkpoint's tokenizer has its scale folded in already
        counts_table = self.passability_due or (not cfg.init_from and self.model.passability is not None)
        if counts_table and recordings is None:
            raise ValueError("a model with game.passability counts its table over every recording: "
                             "give Trainer(recordings=...) (envs.dataset.whole_episodes)")
        self.latents = LatentCache(lambda frames: self.model.tokenizer.encode(frames))
        self.precision, speedup = precision.resolve(cfg.precision, self.device)
        if rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            self.log({"event": "precision", "requested": cfg.precision, "precision": self.precision,
                      "bf16_matmul_speedup": speedup})
            if warm is not None:
                self.log(warm)

    # -- bookkeeping ---------------------------------------------------------------

    def log(self, record: dict) -> None:
        if self.rank == 0:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def save(self, stage: str, optimizer: torch.optim.Optimizer | None) -> None:
        """model.safetensors + config.json, optimizer.safetensors, trainer.json (atomic-ish)."""
        if self.rank != 0:
            return
        from safetensors.torch import save_file

        self.model.save(self.out)
        if optimizer is not None:
            tensors, groups = flatten_optimizer(optimizer)
            save_file(tensors, str(self.out / "optimizer.safetensors"))
        else:
            groups = None
        meta = {"train_config": asdict(self.cfg), "done": self.done, "cpu_seconds": self.cpu_seconds, "stage": stage,
                "latent_std": self.latent_std, "optimizer_groups": groups,
                "rng": self.gen.get_state().tolist()}
        tmp = self.out / "trainer.json.tmp"
        tmp.write_text(json.dumps(meta))
        tmp.replace(self.out / "trainer.json")

    def try_resume(self) -> dict | None:
        """Continue the run in `out` (trainer.json + model.safetensors); everything is read and
        checked before any of it is used, so a bad file raises and changes nothing."""
        meta_path = self.out / "trainer.json"
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            done = {s: int(meta["done"][s]) for s in STAGES}
            cpu_seconds = {s: float(meta.get("cpu_seconds", {}).get(s, 0.0)) for s in STAGES}
            rng = torch.Generator(device=self.device)
            rng.set_state(torch.tensor(meta["rng"], dtype=torch.uint8))
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:  # RuntimeError: a bad rng state
            raise CheckpointError(f"cannot resume from {meta_path}: {type(e).__name__}: {e}; "
                                  "use a new --out or delete the run") from None
        self.model = WorldModel.load(self.out, config=self.model.cfg, device=self.device)  # names a bad file
        self.done, self.cpu_seconds, self.latent_std, self.gen = done, cpu_seconds, meta.get("latent_std"), rng
        return meta

    # -- stages ----------------------------------------------------------------------

    def run(self) -> Path:
        meta = self.try_resume()
        t0 = time.time()
        self.stage_tokenizer(meta)  # a fresh run counts its passability table there
        if self.passability_due and meta is None:  # (a resumed run has it in its weights)
            self.fit_passability()
        self.stage_dit("stage1", meta)
        self.stage_dit("stage2", meta)
        if self.rank == 0:
            self.log({"event": "finished", "seconds": round(time.time() - t0, 1)})
            plot_metrics(self.out / "metrics.jsonl", self.out / "loss_curves.png")
        return self.out

    def _param_groups(self, params: list) -> list[dict]:
        """AdamW groups: the copy path's mix logits (the per-token mix bias, or with dit.prev_shift
        the keep gate's bias) and the player-surroundings map at `mix_lr_mult` x the LR, the
        prompt's projection at `prompt_lr_mult` x, the clock embedding at `clock_lr_mult` x, the
        rest at 1x."""
        dit, cfg = self.model.dit, self.cfg
        prev = dit.prev
        special = []  # (parameters, lr_mult, weight decay)
        if cfg.mix_lr_mult != 1.0:
            logits = [getattr(prev, "mix_bias", None), getattr(getattr(prev, "keep_head", None), "bias", None),
                      getattr(dit, "surround", None)]
            special.append(([p for p in logits if p is not None], cfg.mix_lr_mult, 0.0))
        if cfg.prompt_lr_mult != 1.0:
            prompt = [*dit.prompt_proj.parameters(), getattr(dit, "prompt_null", None)]
            special.append(([p for p in prompt if p is not None], cfg.prompt_lr_mult, 0.01))
        if cfg.clock_lr_mult != 1.0 and dit.clock is not None:
            special.append((list(dit.clock.parameters()), cfg.clock_lr_mult, 0.0))
        wanted = {id(p) for p in params}
        taken: set[int] = set()
        groups = []
        for group, mult, decay in special:
            mine = [p for p in group if id(p) in wanted]
            if mine:
                groups.append({"params": mine, "lr_mult": mult, "weight_decay": decay})
                taken.update(id(p) for p in mine)
        return [{"params": [p for p in params if id(p) not in taken], "lr_mult": 1.0}] + groups

    def _optimizer(self, params, lr: float, stage: str, meta: dict | None) -> torch.optim.Optimizer:
        opt = torch.optim.AdamW(self._param_groups(params), lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
        path = self.out / "optimizer.safetensors"
        if meta and meta.get("stage") == stage and meta.get("optimizer_groups") and path.is_file():
            load_optimizer(opt, read_safetensors(path), meta["optimizer_groups"], source=str(path))
        return opt

    def _wrap(self, module: nn.Module) -> nn.Module:
        if self.world_size > 1:
            return nn.parallel.DistributedDataParallel(module, find_unused_parameters=True)
        return module

    def _loop(self, stage: str, loss_module: nn.Module, params: list, lr: float, total: int,
              make_inputs: Callable[[dict], tuple], clip_len: int, batch: int, meta: dict | None,
              switch_clips: int = 0) -> None:
        start = self.done[stage]
        budget = 60.0 * getattr(self.cfg, STAGE_PREFIX[stage] + "_cpu_minutes")  # 0: no time budget
        if start >= total or (budget and self.cpu_seconds[stage] >= budget):
            return
        opt = self._optimizer(params, lr, stage, meta)
        wrapped = self._wrap(loss_module)
        data = self.batches(clip_len, batch, switch_clips=switch_clips)
        # on a CPU budget the steps that fit are unknown: count them, and show the budget spent
        steps = iter(range(start, total)) if budget else range(start, total)  # no len: no total shown
        bar = tqdm(steps, desc=stage, disable=not self.progress, initial=start, total=None if budget else total)
        t_last = time.time()
        cpu_last = time.process_time()
        for step in bar:
            inputs = make_inputs(next(data))
            progress = self.cpu_seconds[stage] / budget if budget else None
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, lr, self.cfg.warmup, progress) * g.get("lr_mult", 1.0)
            with precision.autocast(self.precision, self.device):
                out = wrapped(*inputs)
            if not torch.isfinite(out["loss"]):  # stop before a bad step reaches the weights
                raise FloatingPointError(f"{stage} loss is {out['loss'].item()} at step {step}; "
                                         f"the last checkpoint in {self.out} is intact")
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            opt.step()
            self.done[stage] = step + 1
            now = time.process_time()  # this process's CPU time: fair on a shared machine
            self.cpu_seconds[stage] += now - cpu_last
            cpu_last = now
            out_of_time = bool(budget) and self.cpu_seconds[stage] >= budget
            if step % self.cfg.log_every == 0 or step + 1 == total:
                rec = {"stage": stage, "step": step, "lr": opt.param_groups[0]["lr"],
                       "grad_norm": round(float(grad_norm), 4), "sec": round(time.time() - t_last, 4)}
                rec.update({k: round(float(v.detach()), 6) for k, v in out.items()})
                self.log(rec)
                spent = {"cpu_min": f"{self.cpu_seconds[stage] / 60:.1f}/{budget / 60:.0f}"} if budget else {}
                bar.set_postfix(loss=f"{rec['loss']:.4f}", **spent)
                t_last = time.time()
            if (step + 1) % self.cfg.ckpt_every == 0 or step + 1 == total or out_of_time:
                self.save(stage, opt)
            if out_of_time:
                self.log({"stage": stage, "event": "cpu_budget_spent", "steps": step + 1,
                          "cpu_seconds": round(self.cpu_seconds[stage], 1)})
                break

    def stage_tokenizer(self, meta: dict | None) -> None:
        cfg = self.cfg
        tok = self.model.tokenizer
        params = list(tok.parameters())
        self._loop("tokenizer", TokenizerLoss(self.model), params, cfg.tok_lr, cfg.tok_steps,
                   lambda b: (b["frames"].reshape(-1, *b["frames"].shape[2:]).to(self.device),),
                   clip_len=1, batch=cfg.tok_batch, meta=meta)
        if self.latent_std is None:  # once, right after tokenizer training (also after a resume)
            frames = next(self.batches(1, 256))["frames"][:, 0].to(self.device)
            self.latent_std = calibrate_latent_scale(self.model, frames)
            self.log({"stage": "tokenizer", "event": "latent_scale", "latent_std": self.latent_std,
                      "psnr": psnr(tok, frames)})
            if tok.cfg.codebook_size:
                self.fit_codebook(frames)
            if self.model.passability is not None:
                self.fit_passability()
            self.save("tokenizer", None)
        for p in params:
            p.requires_grad_(False)  # frozen from here on

    def fit_codebook(self, check_frames: torch.Tensor) -> None:
        """The tile codebook, fitted once the tokenizer is frozen (`fit_codebook`); logs the
        round trip's PSNR on `check_frames` with and without it."""
        tok, cfg = self.model.tokenizer, self.cfg
        t0 = time.process_time()
        fit_codebook(tok, self.batches, cfg.codebook_frames, cfg.codebook_iters, cfg.seed, self.device)
        self.log({"stage": "tokenizer", "event": "codebook", "codes": tok.cfg.codebook_size,
                  "frames": cfg.codebook_frames, "cpu_seconds": round(time.process_time() - t0, 1),
                  "psnr": psnr(tok, check_frames), "psnr_snapped": psnr(tok, check_frames, snap=True)})
        if cfg.decoder_steps:
            t0 = time.process_time()
            tune_decoder(tok, self.batches, cfg.decoder_steps, cfg.decoder_lr, cfg.decoder_snap_share, cfg.seed,
                         self.device, self.progress, cfg.decoder_detail_weight)
            self.log({"stage": "tokenizer", "event": "decoder", "steps": cfg.decoder_steps,
                      "cpu_seconds": round(time.process_time() - t0, 1),
                      "psnr": psnr(tok, check_frames), "psnr_snapped": psnr(tok, check_frames, snap=True)})

    def fit_passability(self) -> None:
        """The passability table (`fit_passability`) over every recorded episode; logs what it counted."""
        t0 = time.process_time()
        counted = fit_passability(self.model, self.recordings(), self.device)
        self.log({"stage": "tokenizer", "event": "passability", **counted,
                  "cpu_seconds": round(time.process_time() - t0, 1)})

    def _prompts(self, captions: list[list[str]], follow: bool = False) -> tuple[list, dict[int, list]]:
        """[B][L] captions -> (B prompts, switches), a clip dropped to the empty prompt at random.
        follow=False: the caption of each clip's last frame (the prompt in force) throughout, no
        switches; True: frame 0's caption, then {j: B prompts} where some caption changes at j."""
        drop = torch.rand(len(captions), generator=self.gen, device=self.device) < self.cfg.caption_dropout
        caps = [[""] * len(c) if dropped else c for c, dropped in zip(captions, drop.tolist())]
        if not follow:
            return [self.text(c[-1]) for c in caps], {}
        changes = sorted({j for c in caps for j in range(1, len(c)) if c[j] != c[j - 1]})
        return [self.text(c[0]) for c in caps], {j: [self.text(c[j]) for c in caps] for j in changes}

    def stage_dit(self, stage: str, meta: dict | None) -> None:
        cfg, model = self.cfg, self.model
        params = [p for n, p in model.named_parameters() if not n.startswith("tokenizer.")]
        if stage == "stage2" and cfg.s2_train != "all":  # the rest frozen (memory: its gradient still runs through the DiT)
            if cfg.s2_train == "gate" and model.dit.copy_gate is None:
                raise ValueError("train config s2_train 'gate' needs a model with dit.copy_gate "
                                 "(e.g. --model '{\"dit\": {\"copy_gate\": true}}' with --init-from)")
            if cfg.s2_train == "memory" and not any(n.startswith("policy.") for n, _ in model.named_parameters()):
                raise ValueError(f"train config s2_train 'memory' needs a memory policy with weights "
                                 f"(e.g. evolving), not {model.cfg.memory.policy!r}")
            train = {"gate": ("dit.copy_gate.",), "heads": ("dit.reward_head.", "dit.done_head."),
                     "memory": ("policy.",)}[cfg.s2_train]
            for n, p in model.named_parameters():
                p.requires_grad_(n.startswith(train))
            params = [p for p in params if p.requires_grad]
        m = model.cfg.memory
        if stage == "stage1":
            clip = model.policy.sink_frames + model.policy.ring_frames + m.chunk_frames  # fits the window
            loss_module, lr, total, batch = Stage1Loss(model, cfg), cfg.s1_lr, cfg.s1_steps, cfg.s1_batch
        else:
            clip, loss_module, lr, total, batch = cfg.s2_clip, Stage2Loss(model, cfg), cfg.s2_lr, cfg.s2_steps, cfg.s2_batch
            if (cfg.s2_rare_power or cfg.fixed_change_weight != 1.0) and not model.cfg.tokenizer.codebook_size:
                raise ValueError("train config s2_rare_power and fixed_change_weight read each token's codebook "
                                 "code: the model has no codebook (tokenizer.codebook_size 0)")
        follow = stage == "stage2" and cfg.s2_switch_clips > 0
        if follow and model.dit.clock is not None:  # its re-cache pass would count from the clip's start
            raise ValueError("train config s2_switch_clips with dit.clock is not supported: the prompt "
                             "switch's re-cache pass reads frame indices from the clip's start, not the episode's")

        def make_inputs(b: dict) -> tuple:
            # without frame keys the cache encodes the batch as it comes
            x0 = self.latents(b if cfg.cache_latents else {"frames": b["frames"]}, self.device)  # [B, L, N, C]
            action_in, reward_in, done_in = shift_actions(b, self.device)
            prompts, switches = self._prompts(b["captions"], follow)
            positions = b["positions"].to(self.device)
            tk = model.cfg.tokenizer
            px = model.cfg.game.view_pixels / tk.grid_size  # base pixels a token spans
            shift = shift_labels(positions, m.chunk_frames, px) if move_labels_needed(model, cfg) else None
            start = b["start"].to(self.device) if model.dit.clock is not None else None
            if stage == "stage1":
                return x0, action_in, reward_in, done_in, prompts, self.gen, shift, start
            weights = revisit_weights(positions, m.window_frames, cfg.revisit_weight)[:, :, None] * free_run_mask(
                positions, clip - cfg.s2_free_frames, tk.grid_size, px)
            if cfg.s2_rare_power or cfg.fixed_change_weight != 1.0:
                codes = model.tokenizer.codebook
                idx = codebook.nearest(x0, codes)  # [B, L, N]
                if cfg.s2_rare_power:
                    weights = weights * rarity_weights(idx, len(codes), cfg.s2_rare_power)
                if cfg.fixed_change_weight != 1.0:
                    weights = weights * fixed_change_weights(idx, model.cfg.game.fixed_tokens(tk.grid_size),
                                                             cfg.fixed_change_weight)
            return x0, action_in, reward_in, done_in, prompts, weights, self.gen, switches, shift, start

        self._loop(stage, loss_module, params, lr, total, make_inputs, clip, batch, meta,
                   switch_clips=cfg.s2_switch_clips if follow else 0)


CODEBOOK_SPREAD = 8
"""The codebook fit and the decoder tune keep every 8th frame they read: batches come a few
episodes at a time (one style each, mostly), and a sample of consecutive batches covered so few
styles that the proxy worlds came back through the codebook at 23.7 dB instead of 26.8 (issue
14, docs/RESULTS.md)."""


def spread_frames(batches: Batches, n: int) -> Iterator[torch.Tensor]:
    """Endless uint8 frames [n, H, W, 3]: every `CODEBOOK_SPREAD`-th frame `batches` reads."""
    for clip in batches(1, n * CODEBOOK_SPREAD):
        yield clip["frames"][::CODEBOOK_SPREAD, 0]


@torch.no_grad()
def fit_codebook(tokenizer, batches: Batches, frames: int, iters: int, seed: int, device="cpu") -> None:
    """Fit `tokenizer.codebook` in place: k-means (world/codebook.py) over the tokens of
    `frames` recorded frames from `spread_frames` (seeded, so a run is reproducible)."""
    sample, chunks, n = spread_frames(batches, 64), [], 0
    while n < frames:
        chunks.append(tokenizer.encode(next(sample).to(device)))  # [b, N, C]
        n += len(chunks[-1])
    tokens = torch.cat(chunks)[:frames].flatten(0, 1)  # [frames * N, C]
    tokenizer.codebook.copy_(codebook.fit(tokens, tokenizer.cfg.codebook_size, iters, seed))


@torch.no_grad()
def fit_passability(model: WorldModel, episodes: Iterable[dict], device="cpu") -> dict:
    """Fill `model.passability` (and `model.spawn`, where the model has one) in place from every
    move step of `episodes` (each a batch of clips, as envs.dataset.whole_episodes yields them;
    world/passability.py, world/spawn.py) -> {"move_steps", "blocked_share", "codes_blocked"}
    (and "ended_share", "codes_ending" with game.hazards; "paid_share", "collectibles",
    "spawn_rate_mean" with game.spawn). The collectibles are counted over the steps that did not
    end the episode."""
    game, grid = model.cfg.game, model.cfg.tokenizer.grid_size
    moves = move_neighbours(game.env, model.cfg.dit.num_actions)
    K = model.cfg.tokenizer.codebook_size
    parts, pairs = [], torch.zeros(K, K, dtype=torch.long) if model.spawn is not None else None
    for clips in episodes:
        counted = passability.count(model.tokenizer, clips, moves, game.fixed_tokens(grid)[0], grid, device)
        parts.append((counted.walked, counted.blocked, counted.paid, counted.ended))
        if pairs is not None:
            pairs += spawn.neighbour_pairs(counted.frames[~counted.ended], grid, K)
    none = torch.zeros(0, dtype=torch.long)
    walked, blocked, paid, ended = ((torch.cat(p) for p in zip(*parts)) if parts
                                    else (none, none.bool(), none.bool(), none.bool()))
    book = model.tokenizer.codebook.cpu()
    table = model.passability.fit(walked, blocked, book, ended)
    out = {"move_steps": len(walked), "blocked_share": float(blocked[~ended].float().mean()) if len(walked) else 0.0,
           "codes_blocked": int((table.blocked > passability.THRESHOLD).sum())}
    if table.ends is not None:
        out.update(ended_share=float(ended.float().mean()) if len(walked) else 0.0,
                   codes_ending=int((table.ends > passability.THRESHOLD).sum()))
    if pairs is not None:
        model.spawn.fit(walked[~ended], paid[~ended], pairs, book)
        out.update(paid_share=float(paid[~ended].float().mean()) if len(walked) else 0.0,
                   collectibles=model.spawn.collectibles(), spawn_rate_mean=float(model.spawn.rate.mean()))
    return out


def tune_decoder(tokenizer, batches: Batches, steps: int, lr: float, snap_share: float, seed: int,
                 device="cpu", progress: bool = False, detail_weight: float = 0.0) -> None:
    """Train the decoder alone, the encoder and the codebook frozen (in place).

    Trained jointly with the encoder, the decoder stops at what a moving latent space lets it
    learn; once the encoder is frozen, its inputs hold still, and 8,000 steps of this alone
    took the round trip's tile validity on the held-out seeds from 0.79 to 0.92 (issue 14,
    docs/RESULTS.md). Half the frames (`snap_share`) come through the codebook, as every
    generated frame does, so the decoder also learns to draw each code as the crisp tile it
    stands for. The DiT never reads the decoder: this can run before or after it is trained."""
    gen = torch.Generator().manual_seed(seed)
    params = list(tokenizer.decoder.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sample, warmup = spread_frames(batches, 32), min(50, steps)
    for step in tqdm(range(steps), desc="decoder", disable=not progress):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup)
        frames = next(sample).to(device)  # uint8 [32, H, W, 3]
        with torch.no_grad():
            tokens = tokenizer.encode(frames)  # [b, N, C]
            through = torch.rand(len(tokens), generator=gen) < snap_share
            tokens[through] = tokenizer.snap(tokens[through])
        loss = tokenizer.reconstruction_loss(frames, tokens, detail_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for p in params:
        p.requires_grad_(False)


@torch.no_grad()
def psnr(tokenizer, frames: torch.Tensor, snap: bool = False) -> float:
    """PSNR (dB) of tokenizer reconstructions of uint8 frames [B, H, W, 3] (snap: through the codebook)."""
    tokens = tokenizer.encode(frames)
    rec = tokenizer.decode(tokenizer.snap(tokens) if snap else tokens).float()
    mse = (rec - frames.float()).pow(2).mean().clamp_min(1e-10)
    return round(float(10 * torch.log10(255.0**2 / mse)), 3)


# --------------------------------------------------------------------------------------------
# Optimizer state without pickle: tensors to safetensors, the rest to JSON.


def flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{idx}.{key}"] = t.detach().cpu().contiguous()
    return tensors, sd["param_groups"]


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list,
                   source: str = "optimizer state") -> None:
    """The inverse of `flatten_optimizer`; CheckpointError if the state does not fit `opt`'s params."""
    try:
        state: dict[int, dict] = {}
        for name, t in tensors.items():
            idx, key = name.split(".", 1)
            state.setdefault(int(idx), {})[key] = t
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{source} does not match the model: {e}") from None
    # torch checks the groups, not the moments: a wrong shape would fail only at the first step
    for p, st in opt.state.items():
        for key, t in st.items():
            if t.dim() and t.shape != p.shape:
                raise CheckpointError(f"{source} does not match the model: {key} of a "
                                      f"{tuple(p.shape)} parameter is {tuple(t.shape)}")
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise CheckpointError(f"{source} holds NaN/Inf values ({key} of a {tuple(p.shape)} parameter)")


def plot_metrics(jsonl: Path, png: Path) -> Path | None:
    """Loss curves per stage as one PNG (skipped when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(1, len(STAGES), figsize=(5 * len(STAGES), 3.6))
    for ax, stage in zip(axes, STAGES):
        pts = [r for r in rows if r.get("stage") == stage and "loss" in r]
        for key in ("loss", "flow", "reward", "done"):
            xs = [r["step"] for r in pts if key in r]
            if xs:
                ax.plot(xs, [r[key] for r in pts if key in r], label=key)
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        if pts:
            ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png


def init_distributed() -> tuple[int, int]:
    """(rank, world_size) under torchrun (gloo on CPU, nccl on GPU); (0, 1) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world
