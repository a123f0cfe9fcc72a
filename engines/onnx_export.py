"""Export the per-frame graphs to ONNX with static shapes, plus a manifest.

`export_onnx(model, out, batch)` writes

  dit_context.onnx     engines.graphs.DiTContext   (the step's attention context, once per frame)
  dit_step.onnx        engines.graphs.DiTStep      (one DiT pass of the current chunk)
  memory_update.onnx   engines.graphs.MemoryUpdate (policies with memory state only)
  decoder.onnx         engines.graphs.Decoder      (tokens -> float pixels)
  manifest.json        model hash, batch, opset, torch version, config, every
                       graph's named inputs/outputs with shapes and dtypes

The model hash is the sha256 of the model's weights serialized as
`WorldModel.save` writes them, i.e. of `model.safetensors`; a directory
exported from other weights (or for another batch) is refused with both
values named, so a stale export can never run silently. So is one written
with another manifest `FORMAT` (the graphs' inputs/outputs changed: format 2
added the previous frame to dit_step).

Uses the TorchScript exporter (`dynamo=False`): it needs no onnxscript and
traces these small static graphs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from world.model import WorldModel

from . import graphs

MANIFEST = "manifest.json"
FORMAT = 3  # 2: dit_step takes the previous frame (prev_latent, prev_level) and returns a velocity for x0 models
# 3: and the previous frame before its context noise (prev_clean)
DEFAULT_OPSET = 17
FILES = {"dit_context": "dit_context.onnx", "dit_step": "dit_step.onnx", "memory_update": "memory_update.onnx",
         "decoder": "decoder.onnx"}


class ManifestError(ValueError):
    """An ONNX directory that does not belong to this model / batch, or is incomplete."""


def model_hash(model: WorldModel) -> str:
    """sha256 of the weights as `WorldModel.save` writes model.safetensors (hex)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return hashlib.sha256(save(tensors)).hexdigest()


def config_hash(model: WorldModel) -> str:
    """sha256 of the model config (the graphs bake it in: policy, RoPE recipe, window, ...)."""
    return hashlib.sha256(json.dumps(model.cfg.to_dict(), sort_keys=True).encode()).hexdigest()


def _config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} vs {vb!r}")
    return out


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def example_inputs(model: WorldModel, batch: int) -> dict[str, dict[str, torch.Tensor]]:
    """Named example inputs of each graph, from a fresh state on the model's device."""
    cfg = model.cfg
    c, N, C = cfg.memory.chunk_frames, cfg.tokenizer.tokens_per_frame, cfg.tokenizer.token_dim
    dev = model.device
    with torch.no_grad():
        state = model.init_state(batch)
    prompt = [state.prompt_pooled] if model.dit.pooled else [state.prompt_tokens, state.prompt_mask]
    memory = [state.memory[n].contiguous() for n in graphs.memory_names(model)]
    context = [state.frame, state.cache.slot_frame, state.cache.k, state.cache.v, *memory]
    with torch.no_grad():
        ctx = graphs.DiTContext(model)(*context)
    step = [torch.randn(batch, c, N, C, device=dev), torch.full((batch, c), 0.5, device=dev),
            torch.zeros(batch, c, dtype=torch.long, device=dev), state.prev_latent, state.prev_level, state.prev_clean,
            *prompt, *ctx]
    update = [state.cache.k, state.cache.v, torch.full((batch,), model.policy.sink_frames, device=dev),
              torch.ones(batch, dtype=torch.bool, device=dev), *memory]
    return {"dit_context": dict(zip(graphs.context_input_names(model), context)),
            "dit_step": dict(zip(graphs.step_input_names(model), step)),
            "memory_update": dict(zip(graphs.update_input_names(model), update)),
            "decoder": {"tokens": torch.randn(batch * c, N, C, device=dev)}}


def _rms_norm_symbolic(g, x, normalized_shape, weight, eps):
    """aten::rms_norm (nn.RMSNorm, in the evolving memory) as ONNX ops: opset < 23 has no RMSNormalization.

    x * 1/sqrt(mean(x^2 over the normalized dims) + eps) * weight, eps defaulting
    to finfo(float32).eps as torch's does.
    """
    from torch.onnx import symbolic_helper as sh

    dims = sh._get_const(normalized_shape, "is", "normalized_shape")
    axes = list(range(-len(dims), 0))
    eps = None if sh._is_none(eps) else sh._maybe_get_const(eps, "f")
    eps = torch.finfo(torch.float32).eps if eps is None else float(eps)
    sq = g.op("Mul", x, x)
    if sh.GLOBALS.export_onnx_opset_version >= 18:  # axes became an input in opset 18
        mean = g.op("ReduceMean", sq, g.op("Constant", value_t=torch.tensor(axes, dtype=torch.long)), keepdims_i=1)
    else:
        mean = g.op("ReduceMean", sq, axes_i=axes, keepdims_i=1)
    eps_t = g.op("Constant", value_t=torch.tensor(eps, dtype=torch.float32))
    y = g.op("Mul", x, g.op("Reciprocal", g.op("Sqrt", g.op("Add", mean, eps_t))))
    return y if sh._is_none(weight) else g.op("Mul", y, weight)


def _register_symbolics(opset: int) -> None:
    torch.onnx.register_custom_op_symbolic("aten::rms_norm", _rms_norm_symbolic, opset)


def _spec(tensors: dict[str, torch.Tensor]) -> dict[str, dict]:
    return {n: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")} for n, t in tensors.items()}


def export_onnx(model: WorldModel, out: str | Path, batch: int = 1, opset: int = DEFAULT_OPSET,
                checkpoint: str | Path | None = None, progress: bool = False) -> Path:
    """Write the graphs + manifest.json for `batch` worlds into `out`; returns `out`.
    progress: a bar over the graphs (a few seconds each on a CPU).

    Raises `graphs.Unsupported` for settings without static shapes (policy `full`).
    """
    graphs.check_supported(model)
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # written last: a half-done export is never taken as done
    was_training = model.training
    model.eval()
    inputs = example_inputs(model, batch)
    modules = {"dit_context": graphs.DiTContext(model), "dit_step": graphs.DiTStep(model),
               "memory_update": graphs.MemoryUpdate(model), "decoder": graphs.Decoder(model)}
    has_memory = bool(graphs.memory_names(model))
    manifest_graphs = {}
    _register_symbolics(opset)
    try:
        for name, module in tqdm(modules.items(), desc="export", unit="graph", disable=not progress):
            path = out / FILES[name]
            if name == "memory_update" and not has_memory:
                path.unlink(missing_ok=True)
                continue
            args = tuple(inputs[name].values())
            with torch.no_grad():
                outs = module(*args)
            outs = outs if isinstance(outs, tuple) else (outs,)
            out_names = graphs.output_names(model)[name]
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # TorchScript-exporter deprecation and tracer notes
                torch.onnx.export(module, args, str(path), input_names=list(inputs[name]),
                                  output_names=out_names, opset_version=opset, dynamo=False,
                                  do_constant_folding=True)
            manifest_graphs[name] = {"file": FILES[name], "inputs": _spec(inputs[name]),
                                     "outputs": _spec(dict(zip(out_names, outs)))}
    finally:
        model.train(was_training)
    manifest = {
        "format": FORMAT,
        "model_hash": model_hash(model),
        "config_hash": config_hash(model),
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "batch": batch,
        "opset": opset,
        "torch_version": torch.__version__,
        "config": model.cfg.to_dict(),
        "graphs": manifest_graphs,
    }
    if checkpoint is not None and (Path(checkpoint) / "model.safetensors").is_file():
        manifest["checkpoint_file_sha256"] = file_sha256(Path(checkpoint) / "model.safetensors")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


MANIFEST_DTYPES = ("float32", "float16", "int64", "int32", "bool", "uint8")  # the dtypes the backends bind


def read_manifest(onnx_dir: str | Path, model: WorldModel | None = None, batch: int | None = None,
                  digest: str | None = None) -> dict:
    """Load DIR/manifest.json and check it against `model` (its hash) and `batch`; clear errors."""
    d = Path(onnx_dir)
    path = d / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{d} holds no {MANIFEST}: not an `echo-infinity export` directory")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # not JSON, or not UTF-8 text
        raise ManifestError(f"bad {path}: {e}") from None
    if not isinstance(manifest, dict):
        raise ManifestError(f"bad {path}: expected a JSON object, got {type(manifest).__name__}")
    fmt = manifest.get("format")
    if isinstance(fmt, int) and fmt < FORMAT:
        raise ManifestError(f"{d} was exported by an older echo-infinity (manifest format {fmt}, this version "
                            f"reads {FORMAT}: its graphs take other inputs); export again "
                            "(echo-infinity export --checkpoint C --out DIR)")
    if fmt != FORMAT:
        raise ManifestError(f"{path} has format {fmt!r}, this version reads {FORMAT}; "
                            "export again, or upgrade echo-infinity if it was exported by a newer one")
    if model is not None:
        own = digest or model_hash(model)
        if manifest.get("model_hash") != own:
            raise ManifestError(f"{d} was exported from another model: manifest model_hash "
                                f"{manifest.get('model_hash')} != this model's {own}; export this "
                                "checkpoint again (echo-infinity export --checkpoint C --out DIR)")
        exported = manifest.get("config")
        diff = _config_diff(exported if isinstance(exported, dict) else {}, model.cfg.to_dict())
        if diff:
            raise ManifestError(f"{d} was exported with another config (exported vs this model: "
                                f"{'; '.join(diff[:4])}); export again")
    if batch is not None and manifest.get("batch") != batch:
        raise ManifestError(f"{d} was exported for batch {manifest.get('batch')}, not {batch}; "
                            f"export again with --batch {batch}")
    listed = manifest.get("graphs")
    needed = {"dit_context", "dit_step", "decoder"}
    if model is not None and graphs.memory_names(model):
        needed.add("memory_update")
    well_formed = isinstance(listed, dict) and all(
        isinstance(g, dict) and isinstance(g.get("file"), str) and isinstance(g.get("inputs"), dict)
        and isinstance(g.get("outputs"), dict) for g in listed.values())
    if not well_formed or not needed <= set(listed):
        raise ManifestError(f"bad {path}: 'graphs' must give the file, inputs and outputs of "
                            f"{', '.join(sorted(needed))}; export again")
    for name, g in listed.items():  # what the backends bind buffers by: {"shape": [int...], "dtype": "float32"}
        for kind in ("inputs", "outputs"):
            for tensor, spec in g[kind].items():
                shape = spec.get("shape") if isinstance(spec, dict) else None
                ok = (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)
                      and spec.get("dtype") in MANIFEST_DTYPES)
                if not ok:
                    raise ManifestError(f"bad {path}: graphs.{name}.{kind}.{tensor} must be "
                                        f"{{\"shape\": [int, ...], \"dtype\": one of {list(MANIFEST_DTYPES)}}}, "
                                        f"got {json.dumps(spec)[:120]}; export again")
    for g in listed.values():
        if not (d / g["file"]).is_file():
            raise ManifestError(f"{d / g['file']} is missing (listed in {path})")
    return manifest


def ensure_exported(model: WorldModel, batch: int, cache_dir: str | Path | None = None) -> Path:
    """The ONNX directory for this model and batch, exported on first use.

    cache_dir: a directory from `echo-infinity export` (checked: same model, same
    batch), or an empty/new one to export into; None: a per-model directory
    under engines.backend.default_cache_dir().
    """
    digest = model_hash(model)
    if cache_dir is None:
        from .backend import default_cache_dir

        cache_dir = default_cache_dir() / "onnx" / f"{digest[:16]}-{config_hash(model)[:8]}-f{FORMAT}-b{batch}"
    d = Path(cache_dir)
    if (d / MANIFEST).is_file():
        read_manifest(d, model, batch, digest=digest)
        return d
    return export_onnx(model, d, batch)
