"""World snapshots on disk: safetensors + a JSON header, validated before use.

The world state is a fixed-size bundle of tensors, so a saved world is small
and constant in size. A snapshot file holds those tensors plus a JSON header
(in the safetensors metadata) with the format version, the hash of the
checkpoint that made it, the frame index, the prompt, and a SHA-256 of the
tensor bytes. Loading never runs code (no pickle) and checks everything before
it returns, so a bad file changes nothing:

- another checkpoint's snapshot  -> SnapshotError naming both hashes
- a truncated or edited file     -> SnapshotError (unreadable, or content hash mismatch)
- a newer format version         -> SnapshotError asking for a newer echo-infinity
- an older format version         -> SnapshotError: its state lacks tensors this version needs
- tensors missing, extra, or of another shape/dtype than the expected state -> SnapshotError
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from world import tile_map
from world.state import NEVER

FORMAT_VERSION = 6
"""1: the first format. 2: the world state holds the previous frame ("prev.latent" [B, N, C],
"prev.level" [B]) that the DiT's direct path reads (world/prev_frame.py). 3: the cache also
keeps what each slot's context pass read ("cache.latent", "cache.level", "cache.action"),
so a prompt switch can re-cache the window (WorldModel.recache). 4: the previous frame and
every slot also keep their clean latent ("prev.clean", "cache.clean"), which the direct
path's copy reads with dit.prev_copy_clean. 5: the frame at which each world's prompt last
changed ("prompt.frame" [B]; `sampler.snap_hold`); a format-4 file loads as "not changed since
the start", which is what it was written without. 6: the tile map ("tile_map.codes",
"tile_map.where", "tile_map.origin"; world/tile_map.py); a format-5 file loads with an empty
map, which is what a world without `sampler.tile_map` keeps."""
OLDEST_READABLE = 4
"""Formats 4 and 5 load with what the later ones added filled in as it was (see FORMAT_VERSION)."""
_HEADER_KEY = "echo_infinity"


class SnapshotError(ValueError):
    """A snapshot file that cannot be loaded into this world; the message says why."""


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_snapshot(path: str | Path, tensors: dict[str, torch.Tensor], checkpoint_hash: str,
                  frame_index: int, prompt: str, extra: dict | None = None) -> Path:
    """Write tensors + header atomically (a crash mid-write leaves the old file)."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    header = {
        "format_version": FORMAT_VERSION,
        "checkpoint_hash": checkpoint_hash,
        "frame_index": int(frame_index),
        "prompt": prompt,
        "content_sha256": tensor_digest(tensors),
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(save(tensors, metadata={_HEADER_KEY: json.dumps(header)}))
    tmp.replace(path)
    return path


def read_header(data: bytes, name: str) -> dict:
    """The JSON header of snapshot bytes, or SnapshotError."""
    try:
        n = int.from_bytes(data[:8], "little")
        if len(data) < 8 + n or n <= 0:
            raise ValueError("header length out of range")
        meta = json.loads(data[8 : 8 + n]).get("__metadata__", {})
        if _HEADER_KEY not in meta:  # e.g. a checkpoint's model.safetensors
            raise ValueError("a safetensors file without a snapshot header")
        header = json.loads(meta[_HEADER_KEY])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SnapshotError(f"{name} is not an Echo-Infinity snapshot or is damaged ({e})") from None
    if not isinstance(header, dict):
        raise SnapshotError(f"{name}: header is not a JSON object")
    return header


def load_snapshot(path: str | Path, checkpoint_hash: str,
                  expected: dict[str, tuple[tuple[int, ...], torch.dtype]] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and fully validate a snapshot; returns (tensors, header).

    `expected` maps tensor name -> (shape, dtype) of the live world state; when
    given, the snapshot must match it exactly.
    """
    path = Path(path)
    if not path.is_file():
        raise SnapshotError(f"no snapshot at {path}")
    data = path.read_bytes()
    header = read_header(data, str(path))
    version = header.get("format_version")
    if not isinstance(version, int):
        raise SnapshotError(f"{path}: header has no format_version")
    if version > FORMAT_VERSION:
        raise SnapshotError(
            f"{path} was written by a newer echo-infinity (snapshot format {version}, "
            f"this one reads up to {FORMAT_VERSION}); upgrade to load it"
        )
    if version < OLDEST_READABLE:
        raise SnapshotError(
            f"{path} was written by an older echo-infinity (snapshot format {version}, this one reads "
            f"format {FORMAT_VERSION}, whose world state also holds the cached frames' latents): it cannot be "
            "continued here and must be re-saved with this version (start the world again, then save)"
        )
    if header.get("checkpoint_hash") != checkpoint_hash:
        raise SnapshotError(
            f"{path} belongs to checkpoint {str(header.get('checkpoint_hash'))[:12]}, "
            f"but this world runs checkpoint {checkpoint_hash[:12]}: a world only continues on the model that made it"
        )
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise SnapshotError(f"{path} is truncated or damaged ({e})") from None
    if tensor_digest(tensors) != header.get("content_sha256"):
        raise SnapshotError(f"{path} was modified after it was written (content hash mismatch)")
    if version == 4 and "frame" in tensors:  # format 5 only added "prompt.frame"
        tensors["prompt.frame"] = torch.full_like(tensors["frame"], NEVER)
    if version <= 5 and "frame" in tensors:  # format 6 only added the tile map
        tensors.update({f"tile_map.{k}": v for k, v in tile_map.empty(len(tensors["frame"])).items()})
    if expected is not None:
        missing, extra = set(expected) - set(tensors), set(tensors) - set(expected)
        if missing or extra:
            raise SnapshotError(f"{path}: state tensors differ (missing {sorted(missing)}, unexpected {sorted(extra)})")
        for name, (shape, dtype) in expected.items():
            t = tensors[name]
            if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
                raise SnapshotError(
                    f"{path}: tensor {name!r} is {tuple(t.shape)} {t.dtype}, this world expects {tuple(shape)} {dtype}"
                )
    return tensors, header
