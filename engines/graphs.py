"""The per-frame graphs as pure functions of tensors (what every backend runs).

A streaming step of `WorldModel` (world/model.py) splits into the graphs
below, with static shapes; everything else (noise from the worlds' generators, the
Euler loop, slot bookkeeping, the in-place cache write) stays in Python on
the torch `WorldState`:

- the DiT step, in two parts:
  `DiTContext` (once per frame) builds the step's attention context from the
  state tensors: recipe ids from `frame` and `slot_frame`, cached keys
  rotated at read time, the memory read, the validity mask;
  `DiTStep` (once per pass) is one DiT pass of the current chunk over that
  context (and, with `dit.prev_frame`, over the last committed frame: the
  state's `prev_latent` / `prev_level` / `prev_clean`), returning the velocity (an x0
  prediction is turned into one inside the graph, `sampler.to_velocity`),
  the chunk's pre-RoPE K/V (the cache rows the context pass writes) and the
  reward / done heads. The same graph serves the K denoising passes and the
  context pass (extra outputs: a copy).
  Rebuilding the context inside every pass instead cost ~15% of a pass
  (tiny, CPU): the cache rotation is the eager model's once-per-step work.
- `MemoryUpdate`: the policy's update with the frame leaving a given slot
  (gathered from the cache inside the graph), gated per world by `evict`.
- `Decoder`: latent tokens -> float pixels in [-1, 1] (uint8 rounding stays
  in torch, so parity can be checked before it).

Each is an `nn.Module` holding the eager model and calling its own code
(`StreamContext`, `DiT`, the policy, the tokenizer) in the concatenating,
side-effect-free mode, so an exported or compiled graph is the eager step.
Input/output names below are the ONNX names too.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from world.cache import KVCache
from world.model import StreamContext, WorldModel
from world.state import WorldState


class Unsupported(ValueError):
    """A model setting the compiled graphs do not cover (clear message, exit 2 in the CLI)."""


def check_supported(model: WorldModel) -> None:
    """Static shapes need a fixed number of attended slots: policy `full` grows, so it is refused."""
    if not model.policy.evicts:
        raise Unsupported(f"policy {model.cfg.memory.policy!r} attends a growing number of frames; "
                          "compiled backends need static shapes: use window, sink, compress or evolving")


def memory_names(model: WorldModel) -> list[str]:
    """Names of the policy's state tensors, in a fixed order (e.g. ['queries'])."""
    with torch.no_grad():
        return sorted(model.policy.init_state(1, torch.device("cpu")))


def prompt_names(model: WorldModel) -> list[str]:
    """The prompt tensors the DiT reads: pooled (tiny) or tokens + mask (cross-attention)."""
    return ["prompt_pooled"] if model.dit.pooled else ["prompt_tokens", "prompt_mask"]


def context_input_names(model: WorldModel) -> list[str]:
    return ["frame", "slot_frame", "cache_k", "cache_v"] + [f"memory.{n}" for n in memory_names(model)]


def context_output_names(model: WorldModel) -> list[str]:
    """Per-layer tensors (ctx_k.0, ...): one stacked [L, ...] tensor costs a split copy per pass."""
    L = model.cfg.dit.depth
    clock = ["clock"] if model.dit.clock is not None else []
    return [f"ctx_k.{i}" for i in range(L)] + [f"ctx_v.{i}" for i in range(L)] + ["mask", "q_cos", "q_sin", *clock]


def step_input_names(model: WorldModel) -> list[str]:
    """prev_latent / prev_level / prev_clean are inputs of every model (one code path); what the
    DiT never reads (all three without dit.prev_frame, prev_clean without dit.prev_copy_clean)
    the ONNX exporter drops."""
    return ["x", "t", "action", *PREV_NAMES] + prompt_names(model) + context_output_names(model)


PREV_NAMES = ["prev_latent", "prev_level", "prev_clean"]
STEP_OUTPUTS = ["velocity", "new_k", "new_v", "reward", "done_logit"]
GATE_OUTPUTS = ["hidden"]  # with dit.copy_gate: the pass's final hidden states, which the gate reads
DECODER_INPUTS, DECODER_OUTPUTS = ["tokens"], ["pixels"]


def update_input_names(model: WorldModel) -> list[str]:
    return ["cache_k", "cache_v", "slot", "evict"] + [f"memory.{n}" for n in memory_names(model)]


def update_output_names(model: WorldModel) -> list[str]:
    return [f"new_memory.{n}" for n in memory_names(model)]


def step_output_names(model: WorldModel) -> list[str]:
    return STEP_OUTPUTS + (GATE_OUTPUTS if model.dit.copy_gate is not None else [])


def output_names(model: WorldModel) -> dict[str, list[str]]:
    """Graph name -> its output names (the ONNX names)."""
    return {"dit_context": context_output_names(model), "dit_step": step_output_names(model),
            "memory_update": update_output_names(model), "decoder": DECODER_OUTPUTS}


class DiTContext(nn.Module):
    """The step's attention context, once per frame (eager: `WorldModel.prepare`).

    (frame [B] int64, slot_frame [B,slots] int64, cache_k/v [L,B,H,slots,N,Dh], memory...) ->
    ctx_k.0..L-1, ctx_v.0..L-1 [B,H,Kc,Dh] ([cache keys rotated with the recipe's ids | memory K/V],
    Kc = slots*N + M), mask [B,1,1,Kc+cN] additive, q_cos/q_sin [B,cN,Dh] (the chunk's rotation)
    [, clock [B,c] int64, the chunk's frame indices, with dit.clock].
    """

    def __init__(self, model: WorldModel):
        super().__init__()
        check_supported(model)
        self.model = model
        self.mem_names = memory_names(model)

    def forward(self, frame, slot_frame, cache_k, cache_v, *mem):
        m = self.model
        cache = KVCache(cache_k, cache_v, slot_frame, m.policy.sink_frames, m.cfg.memory.chunk_frames)
        state = WorldState(frame=frame, cache=cache, memory=dict(zip(self.mem_names, mem)),
                           prompt_pooled=None, prompt_tokens=None, prompt_mask=None,
                           prev_latent=None, prev_level=None, prev_clean=None, prompt_frame=None,
                           generators=[])  # read by the step only
        ctx = StreamContext(m, state, in_place=False)
        clock = (ctx.clock,) if m.dit.clock is not None else ()
        return (*ctx.k, *ctx.v, ctx.mask, ctx.q_cos, ctx.q_sin, *clock)


def stream_context(*tensors: torch.Tensor, clock: bool = False) -> StreamContext:
    """A `StreamContext` around DiTContext's outputs (its own `attend`, concatenating mode);
    clock: the last tensor is the chunk's frame indices (dit.clock)."""
    ctx = StreamContext.__new__(StreamContext)  # the tensors are given: skip building them
    ctx.clock = tensors[-1] if clock else None
    tensors = tensors[:-1] if clock else tensors
    L = (len(tensors) - 3) // 2
    ctx.k, ctx.v = list(tensors[:L]), list(tensors[L:2 * L])
    ctx.mask, ctx.q_cos, ctx.q_sin = tensors[2 * L:]
    ctx.in_place, ctx.n_ctx = False, ctx.k[0].shape[2]
    ctx.record, ctx.new_k, ctx.new_v = True, [], []  # keep the chunk's pre-RoPE K/V for the cache
    return ctx


class DiTStep(nn.Module):
    """One DiT pass of the current chunk over a DiTContext (denoising passes and the context pass).

    (x [B,c,N,C], t [B,c], action [B,c] int64, prev_latent [B,N,C], prev_level [B], prev_clean [B,N,C],
    prompt...,
    DiTContext's outputs) ->
    (velocity [B,c,N,C], new_k/v [L,B,H,c,N,Dh] pre-RoPE, reward [B,c], done_logit [B,c]
    [, hidden [B,c,N,D] with dit.copy_gate]).
    prev_latent / prev_level / prev_clean: the state's last committed frame, its noise level and
    the frame before that noise, expanded
    to every frame of the chunk inside the graph (`WorldModel.prev_input`); ignored (and
    dropped from the ONNX) without dit.prev_frame.
    prompt: prompt_pooled [B,P] (tiny) or prompt_tokens [B,Lp,P] + prompt_mask [B,Lp] bool.
    velocity: for both dit.prediction kinds (x0 -> (x - x0) / t with this pass's t); the
    context pass ignores it.
    """

    def __init__(self, model: WorldModel):
        super().__init__()
        check_supported(model)
        self.model = model
        self.pooled = model.dit.pooled

    def forward(self, x, t, action, prev_latent, prev_level, prev_clean, *rest):
        m = self.model
        n_prompt = 1 if self.pooled else 2
        pooled, tokens, mask = (rest[0], None, None) if self.pooled else (None, rest[0], rest[1])
        state = WorldState(frame=None, cache=None, memory={}, prompt_pooled=pooled, prompt_tokens=tokens,
                           prompt_mask=mask, prev_latent=prev_latent, prev_level=prev_level,
                           prev_clean=prev_clean, prompt_frame=None, generators=[])
        ctx = stream_context(*rest[n_prompt:], clock=m.dit.clock is not None)
        v, hidden = m.velocity(state, ctx, x, t, action)  # the eager pass: prompt, prev frame, to_velocity
        reward, done = m.dit.heads(hidden)
        L, (B, H, _, Dh) = len(ctx.k), ctx.k[0].shape
        c, N = x.shape[1], x.shape[2]
        new_k = torch.stack(ctx.new_k).view(L, B, H, c, N, Dh)
        new_v = torch.stack(ctx.new_v).view(L, B, H, c, N, Dh)
        if m.dit.copy_gate is not None:  # the gate itself runs eager after the Euler loop (WorldModel.snap)
            return v, new_k, new_v, reward, done, hidden
        return v, new_k, new_v, reward, done


class MemoryUpdate(nn.Module):
    """(cache_k/v [L,B,H,slots,N,Dh], slot [B] int64, evict [B] bool, memory...) -> new memory...

    The frame in `slot` is the one leaving the window (read before its slot is
    overwritten); worlds with evict=False keep their memory unchanged.
    """

    def __init__(self, model: WorldModel):
        super().__init__()
        check_supported(model)
        self.model = model
        self.mem_names = memory_names(model)

    def forward(self, cache_k, cache_v, slot, evict, *mem):
        m = self.model
        cache = KVCache(cache_k, cache_v, slot_frame=None, sink_frames=m.policy.sink_frames,
                        chunk_frames=m.cfg.memory.chunk_frames)
        k_ev, v_ev = cache.gather_frame(slot)  # [L, B, H, N, Dh]
        # bool state (compress's `valid`) goes through the update as uint8: onnxruntime's CPU
        # Where has no bool kernel; the values are the same 0/1
        is_bool = [t.dtype == torch.bool for t in mem]
        mem = [t.to(torch.uint8) if b else t for t, b in zip(mem, is_bool)]
        new = m.policy.update(dict(zip(self.mem_names, mem)), k_ev, v_ev, evict)
        return tuple(new[n].bool() if b else new[n] for n, b in zip(self.mem_names, is_bool))


class Decoder(nn.Module):
    """tokens [B*c, N, C] -> float pixels [B*c, 3, H, W] in [-1, 1]."""

    def __init__(self, model: WorldModel):
        super().__init__()
        self.model = model

    def forward(self, tokens):
        return self.model.tokenizer.decode_float(tokens)


def pixels_to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """float [B, 3, H, W] in [-1, 1] -> uint8 [B, H, W, 3], exactly as `FrameTokenizer.decode`."""
    return ((pixels + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
