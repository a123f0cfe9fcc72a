"""Reading weight files a user hands over: one clear error, never a half-loaded model.

A checkpoint is a directory with `model.safetensors` (the tensors) and
`config.json` (the `ModelConfig` they were trained with). Everything here
checks before anything is used, so a bad file raises `CheckpointError` naming
the file and what is wrong with it:

- an empty, truncated (a partial download) or damaged safetensors file, or a
  file of another format renamed (a pickle, a zip, ...): never unpickled,
  never run (safetensors holds plain tensors and a JSON header);
- a config.json that is not JSON or not a valid `ModelConfig`;
- tensors missing or extra, or of another shape or dtype than the model
  their config describes; NaN/Inf values (a diverged training run).

A missing file is a `FileNotFoundError`, as everywhere else.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from .config import ModelConfig

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

# What a file that is not safetensors usually is: its first bytes -> a name for the user.
_OTHER_FORMATS = {
    b"\x80": "a serialized Python object, e.g. an old torch.save .pt/.bin",
    b"PK\x03\x04": "a zip archive, e.g. a torch.save .pt/.pth/.bin or a numpy .npz",
    b"\x93NUMPY": "a numpy .npy array",
    b"\x89HDF": "an HDF5 file, e.g. a Keras .h5",
    b"GGUF": "a GGUF file (llama.cpp)",
    b"{": "a JSON file",
    b"<": "an HTML or XML page, e.g. a failed download",
}


class CheckpointError(ValueError):
    """A weights or config file that cannot be loaded; the message names the file and why."""


def safetensors_header(path: str | Path) -> dict:
    """The parsed JSON header of a safetensors file, after checking the file is whole.

    Layout: an 8-byte little-endian header length n, n bytes of JSON (name ->
    dtype, shape, data_offsets; optional "__metadata__"), then the tensor bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): an interrupted download or copy? fetch it again")
    with open(path, "rb") as f:
        head = f.read(9)
        n = int.from_bytes(head[:8], "little")
        if len(head) < 9 or head[8:9] != b"{":  # the format: "the header data MUST begin with a {"
            kind = next((name for magic, name in _OTHER_FORMATS.items() if head.startswith(magic)), None)
            what = f"it is {kind}" if kind else f"it starts with {head[:8]!r}"
            raise CheckpointError(f"{path} is not a safetensors file: {what}; "
                                  "Echo-Infinity reads weights only as safetensors, which run no code")
        if 8 + n > size:
            raise CheckpointError(f"{path} is truncated: its header alone needs {8 + n} bytes, the file has "
                                  f"{size} (a partial download or copy?)")
        try:
            f.seek(8)
            header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            raise CheckpointError(f"{path} has a damaged safetensors header ({type(e).__name__}: {e})") from None
    if 8 + n + end > size:
        raise CheckpointError(f"{path} is truncated: {size} bytes of the {8 + n + end} its header describes "
                              "(a partial download or copy?)")
    return header


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU; CheckpointError if it is not a whole one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    safetensors_header(path)  # the usual faults, named; the library catches the rest
    try:
        return load_file(str(path))
    except SafetensorError as e:
        raise CheckpointError(f"{path} is damaged ({e})") from None


def read_config(directory: str | Path) -> ModelConfig:
    """The `ModelConfig` saved beside a checkpoint's weights (directory/config.json)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {CONFIG_FILE} in {directory}")
    try:
        return ModelConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as e:  # bad JSON, not UTF-8, a bad field
        raise CheckpointError(f"bad {path}: {e}") from None


def check_tensors(tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
                  source: str, against: str) -> None:
    """CheckpointError unless `tensors` has exactly the names, shapes and dtypes of
    `expected` (a module's state_dict) and every float value is finite."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    both = sorted(set(expected) & set(tensors))
    shapes = [f"{k}: weights {tuple(tensors[k].shape)} vs config {tuple(expected[k].shape)}"
              for k in both if tensors[k].shape != expected[k].shape]
    dtypes = [f"{k}: weights {tensors[k].dtype} vs model {expected[k].dtype}"
              for k in both if tensors[k].dtype != expected[k].dtype]
    parts = []
    if shapes:
        parts.append(f"shape mismatch ({len(shapes)}): " + "; ".join(shapes[:5]))
    if dtypes:
        parts.append(f"dtype mismatch ({len(dtypes)}): " + "; ".join(dtypes[:5]))
    if missing:
        parts.append(f"missing ({len(missing)}): {missing[:5]}")
    if unexpected:
        parts.append(f"unexpected ({len(unexpected)}): {unexpected[:5]}")
    if parts:
        raise CheckpointError(f"{source} does not match {against}: " + " | ".join(parts))
    bad = [k for k in both if tensors[k].is_floating_point() and not bool(torch.isfinite(tensors[k]).all())]
    if bad:
        raise CheckpointError(f"{source} holds NaN/Inf values in {len(bad)} tensor(s) {bad[:5]} "
                              "(the training run that wrote it diverged?)")
