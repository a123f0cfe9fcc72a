"""Which backends can run here, and `make_backend`, which builds one by name.

`make_backend` falls back along FALLBACK (tensorrt -> onnxruntime -> torch,
compile -> torch) with a warning when a backend cannot run here (missing
package, no GPU, no compiler, a policy without static shapes). The backends'
modules load only when one is built, so asking what can run stays cheap.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import shutil
from collections.abc import Callable

import torch

from world.model import WorldModel

from .backend import Backend, BackendUnavailable, TorchBackend
from .graphs import Unsupported, check_supported

BACKENDS = ("torch", "compile", "onnxruntime", "tensorrt")
FALLBACK: dict[str, str | None] = {"tensorrt": "onnxruntime", "onnxruntime": "torch", "compile": "torch",
                                   "torch": None}


# -- what can run here -------------------------------------------------------------------


def _cuda_device(device) -> bool:
    return torch.device(device).type == "cuda"


def _installed(package: str) -> bool:
    """Whether `package` can be imported (without importing it)."""
    return importlib.util.find_spec(package) is not None


def cxx_compiler() -> str | None:
    for cc in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if cc and shutil.which(cc):
            return cc
    return None


def available_backends(device="cpu") -> dict[str, str | None]:
    """name -> None if it can run on `device` here, else the reason it cannot (cheap: imports nothing heavy)."""
    cuda = _cuda_device(device)
    out: dict[str, str | None] = {"torch": None}
    if cuda and not torch.cuda.is_available():
        out["torch"] = f"device {device} asked but torch {torch.__version__} sees no CUDA GPU"
    # compile
    if out["torch"] is not None:
        out["compile"] = out["torch"]
    elif cuda and not _installed("triton"):
        out["compile"] = "torch.compile on CUDA needs triton (pip install triton)"
    elif not cuda and cxx_compiler() is None:
        out["compile"] = "torch.compile on CPU needs a C++ compiler (g++ or clang++) on PATH"
    else:
        out["compile"] = None
    # onnxruntime
    if not _installed("onnxruntime"):
        out["onnxruntime"] = "onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu for CUDA)"
    elif cuda:
        if out["torch"] is not None:
            out["onnxruntime"] = out["torch"]
        else:
            import onnxruntime as ort

            providers = ort.get_available_providers()
            out["onnxruntime"] = None if "CUDAExecutionProvider" in providers else (
                f"onnxruntime has no CUDAExecutionProvider (providers: {providers}); pip install onnxruntime-gpu")
    else:
        out["onnxruntime"] = None
    # tensorrt
    why = []
    if not cuda:
        why.append(f"TensorRT runs on CUDA GPUs only (device is {device})")
    elif out["torch"] is not None:
        why.append(out["torch"])
    if not _installed("tensorrt"):
        why.append("tensorrt is not installed (pip install 'echo-infinity[gpu]' or tensorrt>=10)")
    out["tensorrt"] = "; ".join(why) or None
    return {name: out[name] for name in BACKENDS}


def make_backend(name: str, model: WorldModel, batch: int, device="cpu", cache_dir=None,
                 warn: Callable[[str], object] = print, **options) -> Backend:
    """Build backend `name` for `batch` worlds of `model` on `device`.

    Falls back along FALLBACK, with a warning through `warn`, when `name`
    cannot run here (missing package, no GPU, no compiler, unsupported policy).
    cache_dir: the directory of exported ONNX graphs (`echo-infinity export
    --out`), exported into when it holds none; default a per-model directory
    under `default_cache_dir()`. A directory exported from another model or
    batch is an error, not a fallback. options: passed to the backend
    (e.g. precision="fp16" for tensorrt, threads=1 for onnxruntime).
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {list(BACKENDS)}")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    reasons = available_backends(device)
    if name != "torch":
        try:
            check_supported(model)
        except Unsupported as e:
            reasons = {**reasons, **{n: str(e) for n in BACKENDS if n != "torch"}}
    while True:
        why = reasons[name]
        if why is None:
            try:
                return _build(name, model, batch, device, cache_dir, **options)
            except BackendUnavailable as e:
                why = str(e)
        nxt = FALLBACK[name]
        if nxt is None:
            raise BackendUnavailable(f"backend {name!r} cannot run here: {why}")
        warn(f"warning: backend {name!r} cannot run here ({why}); falling back to {nxt!r}")
        name = nxt


def _build(name: str, model: WorldModel, batch: int, device, cache_dir, **options) -> Backend:
    cls = _backend_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    options = {k: v for k, v in options.items() if k in accepted}  # e.g. precision= is TensorRT's only
    if name in ("torch", "compile"):
        return cls(model, batch, device, **options)
    from .onnx_export import ensure_exported

    return cls(model, ensure_exported(model, batch, cache_dir), batch, device, **options)


def _backend_class(name: str) -> type:
    if name == "torch":
        return TorchBackend
    if name == "compile":
        from .compiled import CompileBackend

        return CompileBackend
    if name == "onnxruntime":
        from .ort import OrtBackend

        return OrtBackend
    from .trt import TensorRTBackend

    return TensorRTBackend
