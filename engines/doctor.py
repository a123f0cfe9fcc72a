"""`echo-infinity doctor`: which backends this machine can run, and why not the others."""

from __future__ import annotations

import importlib.metadata
import platform

import torch

from .registry import BACKENDS, cxx_compiler, available_backends


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def report() -> dict:
    """Versions, devices and, per device, backend -> null (usable) or the reason it is not."""
    info: dict = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": {"available": torch.cuda.is_available(), "torch_cuda_version": torch.version.cuda,
                 "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                 if torch.cuda.is_available() else []},
        "cxx_compiler": cxx_compiler(),
        "onnx": _version("onnx"),
        "onnxruntime": None,
        "onnxruntime_providers": [],
        "tensorrt": None,
    }
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        pass
    info["tensorrt"] = _version("tensorrt") or _version("tensorrt-cu12") or _version("tensorrt_cu12")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    info["backends"] = {dev: available_backends(dev) for dev in devices}
    if "cuda" not in info["backends"]:
        info["backends"]["cuda"] = available_backends("cuda")  # says why: no GPU
    return info


def format_report(info: dict) -> str:
    cuda = info["cuda"]
    lines = [
        f"torch        {info['torch']} ({info['torch_threads']} threads)",
        "CUDA         " + (f"yes, {cuda['torch_cuda_version']}: {', '.join(cuda['devices'])}"
                            if cuda["available"] else "no GPU visible to torch"),
        f"C++ compiler {info['cxx_compiler'] or 'none (torch.compile on CPU needs one)'}",
        f"onnx         {info['onnx'] or 'not installed'}",
        "onnxruntime  " + (f"{info['onnxruntime']} providers: {', '.join(info['onnxruntime_providers'])}"
                            if info["onnxruntime"] else "not installed"),
        f"tensorrt     {info['tensorrt'] or 'not installed'}",
    ]
    for dev, backends in info["backends"].items():
        lines.append(f"\nbackends on {dev}:")
        for name in BACKENDS:
            why = backends[name]
            lines.append(f"  {name:12s} " + ("ok" if why is None else f"no: {why}"))
    return "\n".join(lines)
