"""Compiled backends for the two per-frame graphs (DiT step, memory update).

Planned (issue 9): torch eager (the reference), torch.compile / CUDA graphs,
ONNX + onnxruntime, TensorRT, behind one `Backend` interface. Nothing here
yet: the runtime uses `world.WorldModel` in eager torch.
"""
