"""TensorRT backend: engines built from the exported ONNX, run on torch CUDA buffers.

One engine per graph (dit_context, dit_step, memory_update, decoder), built
with the TensorRT 10 Python API (ONNX parser, builder config with FP16/BF16
flags and a timing cache shared by all builds; shapes are static, so an
optimization profile is added only to pin a dim the parser left dynamic)
and cached on disk under a key of model hash + TensorRT version +
GPU name + precision + batch (+ the export's manifest format), so a second
start deserializes in a second.

Buffers are torch CUDA tensors: the state's cache, memory and prompt are
bound by address (`set_tensor_address`), outputs land in tensors allocated
once, and every engine runs with `execute_async_v3` on torch's current
stream: no host round trip and no sync between the graphs (the action range
check syncs once per frame, as in eager). The memory update is its own
engine on the same stream.

Precision: `precision` ("fp32" | "fp16" | "bf16") applies to the DiT pass
and the decoder; the context (key rotation) and the memory update stay
fp32: they feed state that lives for a million frames.

tensorrt is imported lazily; without it (or without a GPU) `make_backend`
falls back to onnxruntime with a warning.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from world.model import WorldModel

from .backend import BackendUnavailable, GraphBackend
from .graphs import PREV_NAMES
from .onnx_export import ManifestError, read_manifest

PRECISIONS = ("fp32", "fp16", "bf16")
FP32_GRAPHS = ("dit_context", "memory_update")  # state-critical: never built in reduced precision


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable("tensorrt is not installed (pip install 'echo-infinity[gpu]' or "
                                 "tensorrt>=10; it needs an NVIDIA GPU and driver)") from e
    if int(trt.__version__.split(".")[0]) < 10:
        raise BackendUnavailable(f"tensorrt {trt.__version__} is too old: this backend uses the "
                                 "TensorRT 10 name-based tensor API")
    return trt


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def engine_cache_key(model_hash: str, trt_version: str, gpu_name: str, precision: str, batch: int,
                     config_hash: str = "", onnx_format: int | None = None) -> str:
    """Directory name of one engine set, e.g. '0b9171bd0823ad9e-1a2b3c4d-f2-trt10.3.0-nvidia-h100-80gb-hbm3-fp16-b1'.

    Engines are specific to the weights (and the config the graphs bake in),
    the graphs' interface (the manifest format: an engine built from an older
    export lacks inputs), the TensorRT version and the GPU model; precision and
    batch change what is built.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    cfg = f"-{config_hash[:8]}" if config_hash else ""
    fmt = f"-f{onnx_format}" if onnx_format is not None else ""
    return f"{model_hash[:16]}{cfg}{fmt}-trt{_slug(trt_version)}-{_slug(gpu_name)}-{precision}-b{batch}"


def torch_dtype(trt, dt) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int8: torch.int8, trt.bool: torch.bool, trt.int64: torch.int64,
             trt.bfloat16: torch.bfloat16, trt.uint8: torch.uint8}
    return table[dt]


def build_engine(trt, onnx_path: Path, shapes: dict[str, list[int]], precision: str, timing_cache: Path,
                 workspace_bytes: int, logger) -> bytes:
    """Parse ONNX, build a serialized engine for `shapes` (input name -> shape), update the timing cache."""
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ManifestError(f"TensorRT could not parse {onnx_path}: {errors}; export again")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    # Shapes are static; a dim the parser left dynamic is pinned by one profile to the manifest's shape.
    profile, pinned = builder.create_optimization_profile(), False
    for i in range(network.num_inputs):
        inp = network.get_input(i)
        if any(d < 0 for d in tuple(inp.shape)):
            shape = tuple(shapes[inp.name])
            profile.set_shape(inp.name, shape, shape, shape)
            pinned = True
    if pinned:
        config.add_optimization_profile(profile)
    blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
    cache = config.create_timing_cache(blob)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    timing_cache.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


class _Engine:
    """A deserialized engine + execution context; tensors bound by address, run on a CUDA stream."""

    def __init__(self, trt, runtime, path: Path, spec: dict, device: torch.device):
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ManifestError(f"TensorRT could not deserialize the cached engine {path} (damaged, or built by "
                                f"another TensorRT); delete it and it is built again")
        self.context = self.engine.create_execution_context()
        self.trt, self.device = trt, device
        self.io = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            self.io[name] = (is_input, tuple(self.engine.get_tensor_shape(name)),
                             torch_dtype(trt, self.engine.get_tensor_dtype(name)))
        self.spec = spec

    def new_outputs(self) -> dict[str, torch.Tensor]:
        """Output buffers in the engine's dtypes, the manifest's shapes, in the manifest's order."""
        return {name: torch.empty(s["shape"], dtype=self.io[name][2], device=self.device)
                for name, s in self.spec["outputs"].items()}

    def run(self, inputs: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor], stream: int) -> None:
        keep = []  # converted inputs must outlive the enqueue (the caching allocator is stream-ordered)
        for name, (is_input, shape, dt) in self.io.items():
            if not is_input:
                continue
            t = inputs[name].to(dt).contiguous()  # no copy when it already is
            keep.append(t)
            if any(d < 0 for d in shape):  # pinned by the profile; tell the context once per run
                self.context.set_input_shape(name, tuple(t.shape))
            elif tuple(t.shape) != shape:
                raise ValueError(f"input {name!r}: got {list(t.shape)}, the engine takes {list(shape)}")
            self.context.set_tensor_address(name, t.data_ptr())
        for name, t in outputs.items():
            self.context.set_tensor_address(name, t.data_ptr())
        if not self.context.execute_async_v3(stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")


class TensorRTBackend(GraphBackend):
    name = "tensorrt"

    def __init__(self, model: WorldModel, onnx_dir: str | Path, batch: int = 1, device="cuda",
                 precision: str = "fp16", engine_dir: str | Path | None = None, workspace_gb: float = 4.0):
        dev = torch.device(device)
        if dev.type != "cuda" or not torch.cuda.is_available():
            raise BackendUnavailable(f"TensorRT needs a CUDA GPU (device {device}, "
                                     f"cuda available: {torch.cuda.is_available()})")
        trt = import_tensorrt()
        super().__init__(model, batch, dev)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        onnx_dir = Path(onnx_dir)
        self.manifest = read_manifest(onnx_dir, model, batch)
        gpu = torch.cuda.get_device_name(dev)
        self.key = engine_cache_key(self.manifest["model_hash"], trt.__version__, gpu, precision, batch,
                                    self.manifest.get("config_hash", ""), self.manifest["format"])
        root = Path(engine_dir) if engine_dir is not None else onnx_dir / "trt"
        self.engine_dir = root / self.key
        timing = root / f"timing-trt{_slug(trt.__version__)}-{_slug(gpu)}.cache"
        self.logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self.logger)
        self.engines = {}
        with torch.cuda.device(dev):
            for name, spec in self.manifest["graphs"].items():
                path = self.engine_dir / f"{name}.engine"
                if not path.is_file():
                    prec = "fp32" if name in FP32_GRAPHS else precision
                    shapes = {n: v["shape"] for n, v in spec["inputs"].items()}
                    blob = build_engine(trt, onnx_dir / spec["file"], shapes, prec, timing,
                                        int(workspace_gb * 2**30), self.logger)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(blob)
                self.engines[name] = _Engine(trt, runtime, path, spec, dev)
        self._ctx_out = self.engines["dit_context"].new_outputs()
        self.ctx_names = list(self._ctx_out)
        self._step_out = self.engines["dit_step"].new_outputs()
        self._dec_out = self.engines["decoder"].new_outputs()
        self.prompt_names = ["prompt_pooled"] if model.dit.pooled else ["prompt_tokens", "prompt_mask"]

    @staticmethod
    def _stream() -> int:
        return torch.cuda.current_stream().cuda_stream

    def run_context(self, state):
        c = state.cache
        inputs = {"frame": state.frame, "slot_frame": c.slot_frame, "cache_k": c.k, "cache_v": c.v}
        inputs.update({f"memory.{n}": state.memory[n] for n in self.mem_names})
        self.engines["dit_context"].run(inputs, self._ctx_out, self._stream())
        return tuple(self._ctx_out.values())

    def run_step(self, x, t, action, state, ctx, uncond=False):
        inputs = {"x": x, "t": t, "action": action, **dict(zip(PREV_NAMES, self.prev_inputs(state)))}
        inputs.update(zip(self.prompt_names, self.prompt_inputs(state, uncond)))
        inputs.update(zip(self.ctx_names, ctx))
        out = self._step_out
        self.engines["dit_step"].run(inputs, out, self._stream())
        f32 = lambda t: t.float() if t.dtype != torch.float32 else t
        kept = tuple(f32(out[n]).clone() for n in ("reward", "done_logit", "hidden") if n in out)
        return (f32(out["velocity"]), f32(out["new_k"]), f32(out["new_v"]), *kept)

    def run_update(self, state, slot, evict):
        c = state.cache
        inputs = {"cache_k": c.k, "cache_v": c.v, "slot": slot, "evict": evict}
        inputs.update({f"memory.{n}": state.memory[n] for n in self.mem_names})
        g = self.engines["memory_update"]
        out = g.new_outputs()  # fresh: the state's memory dict is replaced, as in eager
        g.run(inputs, out, self._stream())
        return {n: out[f"new_memory.{n}"] for n in self.mem_names}

    def run_decoder(self, tokens):
        self.engines["decoder"].run({"tokens": tokens}, self._dec_out, self._stream())
        return self._dec_out["pixels"].float().clone()
