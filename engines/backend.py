"""The `Backend` interface for the per-frame graphs, and the drivers the backends share.

The backends (engines/registry.py builds the one `--backend` names), fastest first
where they can run:

- `tensorrt`:    TensorRT engines built from the exported ONNX (CUDA only);
- `onnxruntime`: the exported ONNX graphs through onnxruntime (CPU, CUDA or TensorRT EP);
- `compile`:     torch.compile of the same graphs (CUDA graphs on CUDA);
- `torch`:       eager `WorldModel.step`, the reference every other one is tested against.

All but `torch` run the graphs of engines/graphs.py (DiT step, memory update,
decoder) with static shapes through one Python driver (`GraphBackend`): the
state stays a torch `WorldState`, noise comes from its generators, and the
sampling loop and slot bookkeeping are the eager model's own.

This module imports no backend: the backends import it, and the registry
imports them (the arrows run one way: backend <- compiled/ort/trt <- registry).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import torch

from world import sampler
from world.model import StepResult, WorldModel
from world.state import WorldState

from .graphs import check_supported, memory_names, pixels_to_uint8


class Backend(Protocol):
    name: str  # "torch" | "compile" | "onnxruntime" | "tensorrt"
    model: WorldModel  # the eager model (state init, prompts, snapshots stay torch)

    def step(self, state: WorldState, action: torch.Tensor, steps: int) -> StepResult:
        """Exactly `WorldModel.step`: action int64 [B] -> StepResult(frame uint8 [B, H, W, 3],
        reward [B], done prob [B]); advances `state` in place."""
        ...


class BackendUnavailable(RuntimeError):
    """The backend cannot run in this environment (make_backend falls back past it)."""


def default_cache_dir() -> Path:
    """Where exported ONNX graphs and TensorRT engines are kept: $ECHO_INFINITY_CACHE,
    else $XDG_CACHE_HOME/echo-infinity, else ~/.cache/echo-infinity."""
    if os.environ.get("ECHO_INFINITY_CACHE"):
        return Path(os.environ["ECHO_INFINITY_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "echo-infinity"


class TorchBackend:
    """The eager reference: `WorldModel.step` as it is."""

    name = "torch"

    def __init__(self, model: WorldModel, batch: int = 1, device="cpu"):
        self.model, self.batch, self.device = model, batch, torch.device(device)

    def step(self, state: WorldState, action: torch.Tensor, steps: int | None = None) -> StepResult:
        return self.model.step(state, action, steps)

    @torch.no_grad()
    def step_latents(self, state: WorldState, action: torch.Tensor, steps: int | None = None):
        """(x0 [B, c, N, C], reward [B, c], done_logit [B, c]); for parity tests."""
        return self.model.step_latents(state, action, steps)

    @torch.no_grad()
    def decode_float(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, N, C] -> float pixels [B, 3, H, W] in [-1, 1] (before uint8 rounding)."""
        return self.model.tokenizer.decode_float(tokens)

    def close(self) -> None:
        pass


class GraphBackend:
    """The shared driver: eager sampling loop and bookkeeping around three graph callables.

    Subclasses implement `run_context`, `run_step`, `run_update` and
    `run_decoder` (tensors in, tensors out, in the order of engines/graphs.py). Mirrors
    `WorldModel.step_latents` / `commit` / `step` line by line, so the same
    seeds and actions give the same frames as the eager model.
    """

    name = "graphs"

    def __init__(self, model: WorldModel, batch: int = 1, device="cpu"):
        check_supported(model)
        self.model, self.batch, self.device = model, batch, torch.device(device)
        self.mem_names = memory_names(model)
        self._no_prompt: list[torch.Tensor] | None = None  # the empty prompt's inputs (guidance)

    # -- the three graphs (subclasses) -------------------------------------------------

    def run_context(self, state: WorldState) -> tuple[torch.Tensor, ...]:
        """-> DiTContext's outputs (graphs.context_output_names), valid until the next call."""
        raise NotImplementedError

    def run_step(self, x, t, action, state: WorldState, ctx: tuple[torch.Tensor, ...], uncond: bool = False):
        """One DiTStep over ctx, reading the state's prompt (uncond: the empty prompt) and previous
        frame (prev_latent, prev_level, prev_clean) -> (velocity [B,c,N,C], new_k [L,B,H,c,N,Dh],
        new_v, reward [B,c], done_logit [B,c][, hidden [B,c,N,D] with dit.copy_gate]); velocity
        and new_k/v may be buffers the next call reuses, the rest are the caller's."""
        raise NotImplementedError

    def run_update(self, state: WorldState, slot: torch.Tensor, evict: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def run_decoder(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def close(self) -> None:
        pass

    # -- the step ----------------------------------------------------------------------

    def check_state(self, state: WorldState) -> None:
        if state.batch != self.batch:
            raise ValueError(f"backend {self.name!r} was built for batch {self.batch}, "
                             f"the state holds {state.batch} worlds")

    def prompt_inputs(self, state: WorldState, uncond: bool = False) -> list[torch.Tensor]:
        """The step's prompt inputs; uncond: the empty prompt's (zeros, kept for the next call)."""
        inputs = [state.prompt_pooled] if self.model.dit.pooled else [state.prompt_tokens, state.prompt_mask]
        if not uncond:
            return inputs
        if self._no_prompt is None or self._no_prompt[0].shape != inputs[0].shape:
            self._no_prompt = [torch.zeros_like(p) for p in inputs]
        return self._no_prompt

    @staticmethod
    def prev_inputs(state: WorldState) -> list[torch.Tensor]:
        """The step's previous-frame inputs, in graphs.PREV_NAMES order."""
        return [state.prev_latent, state.prev_level, state.prev_clean]

    def memory_inputs(self, state: WorldState) -> list[torch.Tensor]:
        return [state.memory[n] for n in self.mem_names]

    @torch.no_grad()
    def step_latents(self, state: WorldState, action, steps: int | None = None):
        """As `WorldModel.step_latents`: (x0 [B, c, N, C], reward [B, c], done_logit [B, c])."""
        model, cfg = self.model, self.model.cfg
        steps = cfg.sampler.steps if steps is None else steps
        if not isinstance(steps, int) or not 1 <= steps <= 64:
            raise ValueError(f"steps must be an int in [1, 64], got {steps!r}")
        self.check_state(state)
        B = state.batch
        action = model.check_action(action, B)  # [B, c]
        c, N, C = cfg.memory.chunk_frames, cfg.tokenizer.tokens_per_frame, cfg.tokenizer.token_dim
        dev = state.frame.device
        ctx = self.run_context(state)  # once per frame, shared by every pass (as `model.prepare`)
        x = model._noise(state, (c, N, C)) * model.cfg.sampler.temperature  # [B, c, N, C]
        ts, g = sampler.timesteps(steps).tolist(), model.guidance_scales(state)
        for t, t_next in zip(ts[:-1], ts[1:]):  # sampler.sample's Euler loop
            tt = torch.full((B, c), t, device=dev)
            out = self.run_step(x, tt, action, state, ctx)
            v, hidden = out[0], out[5] if len(out) > 5 else None  # hidden: a copy (dit.copy_gate)
            if g is not None:  # classifier-free guidance (WorldModel.sample); the step's buffers are reused
                v = sampler.guide(v.clone(), self.run_step(x, tt, action, state, ctx, uncond=True)[0], g)
            x = x + (t_next - t) * v
        x0 = model.snap(x, state, hidden, action)
        hazard = model.walks_into_hazard(state, action)  # before commit, as WorldModel.step_latents
        # commit: context pass, evictions into memory, in-place cache write, the previous frame
        t_c = cfg.sampler.context_noise
        level = torch.full((B,), t_c, device=dev)  # [B]
        x_c = x0
        if t_c > 0:
            x_c = sampler.add_noise(x0, model._noise(state, (c, N, C)), level[:, None].expand(B, c))
        _, new_k, new_v, reward, done = self.run_step(x_c, torch.full((B, c), t_c, device=dev), action, state, ctx)[:5]
        cache = state.cache
        slots = cache.slots_for(state.frame)  # [B, c]
        if self.mem_names:
            b = torch.arange(B, device=dev)
            for i in range(c):  # oldest window frames leave, one by one, into memory
                evict = (cache.slot_frame[b, slots[:, i]] >= 0) & (slots[:, i] >= cache.S)  # [B]
                state.memory = self.run_update(state, slots[:, i].contiguous(), evict)
        cache.write(slots, state.frame[:, None] + torch.arange(c, device=dev), new_k, new_v,
                    x_c, level[:, None].expand(B, c), action, x0)
        state.frame = state.frame + c
        # the next chunk reads the frame as the cache saw it (the context pass's input, its level);
        # contiguous: the graphs bind it by address for every pass of the next frame
        state.prev_latent = x_c[:, -1].contiguous()  # [B, N, C]
        state.prev_level = level
        state.prev_clean = x0[:, -1].contiguous()
        return x0, reward, model.hazard_done(done, hazard)

    @torch.no_grad()
    def decode_float(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, N, C] -> float pixels [B, 3, H, W] in [-1, 1]."""
        return self.run_decoder(tokens.contiguous())

    @torch.no_grad()
    def step(self, state: WorldState, action, steps: int | None = None) -> StepResult:
        x0, reward, done = self.step_latents(state, action, steps)
        B, c = x0.shape[:2]
        frames = pixels_to_uint8(self.decode_float(x0.reshape(B * c, *x0.shape[2:])))  # [B*c, H, W, 3]
        reward, done = self.model.outcome(reward, done)
        if c == 1:
            return StepResult(frames, reward[:, 0], done[:, 0])
        return StepResult(frames.view(B, c, *frames.shape[1:]), reward, done)


class EagerGraphBackend(GraphBackend):
    """The graphs of engines/graphs.py in eager torch: what ONNX export and torch.compile see."""

    name = "graphs"

    def __init__(self, model: WorldModel, batch: int = 1, device="cpu"):
        super().__init__(model, batch, device)
        from .graphs import Decoder, DiTContext, DiTStep, MemoryUpdate

        self.context, self.dit_step = DiTContext(model), DiTStep(model)
        self.update, self.decoder = MemoryUpdate(model), Decoder(model)

    def run_context(self, state):
        c = state.cache
        return self.context(state.frame, c.slot_frame, c.k, c.v, *self.memory_inputs(state))

    def run_step(self, x, t, action, state, ctx, uncond=False):
        return self.dit_step(x, t, action, *self.prev_inputs(state), *self.prompt_inputs(state, uncond), *ctx)

    def run_update(self, state, slot, evict):
        out = self.update(state.cache.k, state.cache.v, slot, evict, *self.memory_inputs(state))
        return dict(zip(self.mem_names, out))

    def run_decoder(self, tokens):
        return self.decoder(tokens)
