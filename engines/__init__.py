"""Backends for the per-frame graphs (DiT step, memory update, frame decoder).

`make_backend(name, model, batch)` gives an object whose `step(state, action,
steps)` is exactly `WorldModel.step`; the state stays a torch `WorldState`.

  backend.py      the `Backend` interface and the shared Python driver (imports no backend)
  registry.py     what can run here, `make_backend` and its fallbacks (imports the backends)
  graphs.py       the graphs as pure functions of tensors (what is exported / compiled)
  onnx_export.py  ONNX export + manifest.json (model hash, batch, shapes, opset)
  ort.py          onnxruntime with IO binding on the state's own buffers
  compiled.py     torch.compile (CUDA graphs on CUDA)
  trt.py          TensorRT engines built from the ONNX, cached per model/TRT version/GPU
  bench.py        backends side by side (`echo-infinity bench --target backends`)
  doctor.py       what this machine can run (`echo-infinity doctor`)

The eager `torch` backend is the reference; tests/test_engines.py holds every
other backend to it over streamed frames with memory updates.
"""

from .backend import Backend, BackendUnavailable
from .registry import BACKENDS, available_backends, make_backend

__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "available_backends", "make_backend"]
