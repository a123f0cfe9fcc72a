"""onnxruntime backend: the exported graphs, run with IO binding on the state's own buffers.

Inputs are bound by pointer to the torch tensors of the `WorldState` (the
static cache, memory, prompt, frame counters, previous frame), so a pass
copies nothing in: per frame only the graph outputs are written (velocity,
the chunk's K/V, the new memory, the pixels) into torch buffers allocated
once per backend.
Execution providers: TensorRT / CUDA when the state lives on a GPU and the
installed onnxruntime has them, else CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from world.model import WorldModel

from .backend import BackendUnavailable, GraphBackend
from .graphs import PREV_NAMES
from .onnx_export import ManifestError, read_manifest

_NP = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64, torch.int32: np.int32,
       torch.bool: np.bool_, torch.uint8: np.uint8}
_TORCH = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64, "int32": torch.int32,
          "bool": torch.bool, "uint8": torch.uint8}


def providers_for(device) -> list[str]:
    """The execution providers to use for `device`, best first (only those installed)."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    want = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if torch.device(device).type == "cuda" else []
    return [p for p in want if p in have] + ["CPUExecutionProvider"]


class _Graph:
    """One InferenceSession + its IOBinding; outputs land in preallocated torch tensors."""

    def __init__(self, path: Path, spec: dict, device: torch.device, options, providers: list):
        import onnxruntime as ort

        dev_index = device.index if device.index is not None else (torch.cuda.current_device()
                                                                    if device.type == "cuda" else 0)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) derive from Exception only
            raise ManifestError(f"{path} is not a loadable ONNX graph ({e}); export again "
                                "(echo-infinity export --checkpoint C --out DIR)") from None
        self.binding = self.session.io_binding()
        self.device_type, self.device_id = device.type, dev_index
        self.inputs = {n: (tuple(s["shape"]), _TORCH[s["dtype"]]) for n, s in spec["inputs"].items()}
        self.outputs = {n: (tuple(s["shape"]), _TORCH[s["dtype"]]) for n, s in spec["outputs"].items()}
        bound = [i.name for i in self.session.get_inputs()]  # the exporter drops unused inputs
        self.input_names = [n for n in self.inputs if n in bound]
        self.device = device
        self._bound: dict[str, int] = {}  # name -> address currently bound

    def new_outputs(self) -> dict[str, torch.Tensor]:
        return {n: torch.empty(shape, dtype=dt, device=self.device) for n, (shape, dt) in self.outputs.items()}

    def run(self, inputs: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> None:
        """inputs/outputs: contiguous torch tensors with the manifest's shapes and dtypes (checked).

        A binding is a raw address: it is renewed only when a tensor's address changes
        (bind calls cost 8-13 us each; the static cache and the reused output buffers keep theirs).
        """
        b, bound = self.binding, self._bound
        for name in self.input_names:
            t = inputs[name]
            shape, dt = self.inputs[name]
            if tuple(t.shape) != shape or t.dtype != dt:
                raise ValueError(f"input {name!r}: got {t.dtype} {list(t.shape)}, the graph takes {dt} {list(shape)}")
            if not t.is_contiguous():
                raise ValueError(f"input {name!r} must be contiguous")
            ptr = t.data_ptr()
            if bound.get(name) != ptr:
                b.bind_input(name, self.device_type, self.device_id, _NP[dt], shape, ptr)
                bound[name] = ptr
        for name, t in outputs.items():
            ptr = t.data_ptr()
            if bound.get(name) != ptr:
                b.bind_output(name, self.device_type, self.device_id, _NP[t.dtype], tuple(t.shape), ptr)
                bound[name] = ptr
        if self.device_type == "cuda":  # torch wrote the inputs on its stream; onnxruntime uses its own
            torch.cuda.current_stream(self.device).synchronize()
        self.session.run_with_iobinding(b)  # returns once its outputs are written (the CUDA EP syncs)


class OrtBackend(GraphBackend):
    name = "onnxruntime"

    def __init__(self, model: WorldModel, onnx_dir: str | Path, batch: int = 1, device="cpu",
                 threads: int | None = None, providers: list[str] | None = None):
        super().__init__(model, batch, device)
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailable("onnxruntime is not installed (pip install onnxruntime)") from e
        d = Path(onnx_dir)
        self.manifest = read_manifest(d, model, batch)
        if model.device.type != self.device.type:
            raise ValueError(f"the model is on {model.device}, the backend was asked for {self.device}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = threads or torch.get_num_threads()  # 1: runs on the calling thread
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only
        names = providers or providers_for(self.device)
        index = self.device.index if self.device.index is not None else 0
        gpu = {"device_id": index}
        trt_ep = {**gpu, "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(d / "ort_trt_cache"),
                  "trt_timing_cache_enable": "True"}
        self.providers = [(p, trt_ep if p == "TensorrtExecutionProvider" else gpu if p == "CUDAExecutionProvider"
                           else {}) for p in names]
        specs = self.manifest["graphs"]
        self.graphs = {name: _Graph(d / spec["file"], spec, self.device, opts, self.providers)
                       for name, spec in specs.items()}
        self._ctx_out = self.graphs["dit_context"].new_outputs()  # reused: valid for one frame
        self.ctx_names = list(self._ctx_out)
        self._step_out = self.graphs["dit_step"].new_outputs()  # reused: consumed before the next pass
        self._dec_out = self.graphs["decoder"].new_outputs()
        self.prompt_names = ["prompt_pooled"] if model.dit.pooled else ["prompt_tokens", "prompt_mask"]

    def run_context(self, state):
        c = state.cache
        inputs = {"frame": state.frame, "slot_frame": c.slot_frame, "cache_k": c.k, "cache_v": c.v}
        inputs.update({f"memory.{n}": state.memory[n].contiguous() for n in self.mem_names})
        self.graphs["dit_context"].run(inputs, self._ctx_out)
        return tuple(self._ctx_out.values())

    def run_step(self, x, t, action, state, ctx, uncond=False):
        inputs = {"x": x.contiguous(), "t": t, "action": action.contiguous()}
        inputs.update(zip(PREV_NAMES, (p.contiguous() for p in self.prev_inputs(state))))
        inputs.update(zip(self.prompt_names, self.prompt_inputs(state, uncond)))
        inputs.update(zip(self.ctx_names, ctx))
        out = self._step_out
        self.graphs["dit_step"].run(inputs, out)
        # reward/done (and the gate's hidden) are handed to the caller: copies, the buffers are reused next pass
        kept = tuple(out[n].clone() for n in ("reward", "done_logit", "hidden") if n in out)
        return (out["velocity"], out["new_k"], out["new_v"], *kept)

    def run_update(self, state, slot, evict):
        c = state.cache
        inputs = {"cache_k": c.k, "cache_v": c.v, "slot": slot, "evict": evict}
        inputs.update({f"memory.{n}": state.memory[n].contiguous() for n in self.mem_names})
        g = self.graphs["memory_update"]
        out = g.new_outputs()  # fresh tensors: the state's memory dict is replaced, as in eager
        g.run(inputs, out)
        return {n: out[f"new_memory.{n}"] for n in self.mem_names}

    def run_decoder(self, tokens):
        self.graphs["decoder"].run({"tokens": tokens}, self._dec_out)
        return self._dec_out["pixels"].clone()
