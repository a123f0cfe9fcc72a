"""torch.compile backend: the graphs of engines/graphs.py compiled by TorchInductor.

CPU: inductor's C++ kernels (needs a C++ compiler); measured ~1.17x eager on
the 2-core dev box (tiny, 1 thread), after ~60 s of compilation the first
time (inductor caches it on disk). CUDA: mode="reduce-overhead", i.e. CUDA
graphs; a replay may overwrite earlier outputs, so everything the driver
keeps past the next graph call (context, cache rows, heads, memory, pixels)
is cloned.
Compilation happens in the constructor (a warm-up step on a scratch state),
so the first real frame is not a multi-second stall and a failing compile
makes `make_backend` fall back to eager torch instead of failing mid-game.
"""

from __future__ import annotations

import warnings

import torch

from world.model import WorldModel

from .backend import BackendUnavailable, EagerGraphBackend


class CompileBackend(EagerGraphBackend):
    name = "compile"

    def __init__(self, model: WorldModel, batch: int = 1, device="cpu", mode: str | None = None,
                 compiler: str = "inductor", warmup: bool = True):
        """mode: torch.compile mode (default: "reduce-overhead" on CUDA, "default" on CPU);
        compiler: torch.compile backend ("inductor"; "eager"/"aot_eager" check the graph
        capture only, in seconds instead of a minute)."""
        super().__init__(model, batch, device)
        self.cuda = self.device.type == "cuda"
        self.mode = mode or ("reduce-overhead" if self.cuda and compiler == "inductor" else None)
        self.compiler = compiler
        compile_ = lambda m: torch.compile(m, backend=compiler, mode=self.mode, fullgraph=True, dynamic=False)
        self.context, self.dit_step = compile_(self.context), compile_(self.dit_step)
        self.update, self.decoder = compile_(self.update), compile_(self.decoder)
        if warmup:
            self.warmup()

    def warmup(self) -> None:
        """Compile every graph now: two frames on a scratch state (the second with an eviction path)."""
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The .grad attribute")  # dynamo probing state tensors
                state = self.model.init_state(self.batch)
                action = torch.zeros(self.batch, dtype=torch.long, device=self.device)
                for _ in range(2):
                    self.step(state, action, 1)
        except Exception as e:  # inductor/triton errors have many types; report and fall back
            raise BackendUnavailable(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0]})") from e

    def _mark(self) -> None:
        if self.cuda and self.mode == "reduce-overhead":  # a new replay generation per graph call
            torch.compiler.cudagraph_mark_step_begin()

    def run_context(self, state):
        self._mark()
        out = super().run_context(state)
        return tuple(t.clone() for t in out) if self.cuda else out  # replays of dit_step follow

    def run_step(self, x, t, action, state, ctx, uncond=False):
        self._mark()
        out = super().run_step(x, t, action, state, ctx, uncond)
        if self.cuda:  # new_k/new_v are written to the cache after the memory update's replay
            return tuple(o.clone() for o in out)
        return (*out[:3], *(o.clone() for o in out[3:]))  # reward, done (and hidden): the caller's

    def run_update(self, state, slot, evict):
        self._mark()
        return {k: v.clone() for k, v in super().run_update(state, slot, evict).items()}

    def run_decoder(self, tokens):
        self._mark()
        return super().run_decoder(tokens).clone()
