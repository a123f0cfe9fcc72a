"""Episode shards on disk: the recording format (numpy only, never pickle).

One shard per episode, `episode_000000.npz` (numpy's zip of .npy arrays,
written by `write_episode`, always loaded with `allow_pickle=False`):

    frames        uint8   [T+1, R, R, 3]  observation after reset, then after each step
    actions       int64   [T]             actions[t] taken at frames[t], gives frames[t+1]
    rewards       float32 [T]             reward of actions[t]
    terminated    bool    [T]             episode ended (hazard) by actions[t]
    truncated     bool    [T]             time limit reached by actions[t]
    positions     int64   [T+1, 2]        player world position (x, y) in pixels per frame
                                          (zeros for envs without info["position"])
    caption_table <U{n}   [K]             the distinct captions of the episode
    caption_ids   int32   [T+1]           caption of frames[t] = caption_table[caption_ids[t]]
    revisits      int64   [V, 2]          (leave_frame, return_frame): same position again
    meta          <U{n}   []              JSON: format, version, env_id, policy, seed, ...

A dataset directory holds the shards and `manifest.json` (format, version,
env, policy, resolution, action meanings and per-shard length/bytes/sha256).
A missing, truncated or malformed shard raises `ShardError` naming the file.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

FORMAT = "echo-infinity/episode"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARD_GLOB = "episode_*.npz"
ARRAYS = ("frames", "actions", "rewards", "terminated", "truncated", "positions",
          "caption_table", "caption_ids", "revisits", "meta")


class ShardError(ValueError):
    """A shard (or dataset directory) that cannot be read; the message names the file."""


@dataclass
class Episode:
    """One recorded episode (see the module docstring for shapes)."""

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    positions: np.ndarray
    caption_table: np.ndarray
    caption_ids: np.ndarray
    revisits: np.ndarray
    meta: dict = field(default_factory=dict)
    path: str = ""

    @property
    def length(self) -> int:
        """Number of steps T (there are T+1 frames)."""
        return int(self.actions.shape[0])

    @property
    def ended(self) -> bool:
        """Did the episode end by termination (its last step's `terminated`)?"""
        return bool(self.length and self.terminated[-1])

    @property
    def captions(self) -> list[str]:
        """Caption of every frame, [T+1]."""
        return [str(c) for c in self.caption_table[self.caption_ids]]


def shard_name(index: int) -> str:
    return f"episode_{index:06d}.npz"


def write_episode(path: str | os.PathLike, *, frames, actions, rewards, terminated, truncated,
                  positions, captions: Sequence[str], revisits=(), meta: dict) -> int:
    """Write one episode shard atomically (tmp file + rename); returns its size in bytes."""
    path = Path(path)
    table, ids = np.unique(np.asarray(list(captions), dtype=str), return_inverse=True)
    arrays = dict(
        frames=np.ascontiguousarray(frames, dtype=np.uint8),
        actions=np.asarray(actions, dtype=np.int64),
        rewards=np.asarray(rewards, dtype=np.float32),
        terminated=np.asarray(terminated, dtype=bool),
        truncated=np.asarray(truncated, dtype=bool),
        positions=np.asarray(positions, dtype=np.int64).reshape(-1, 2),
        caption_table=table.astype(str),
        caption_ids=ids.astype(np.int32).reshape(-1),
        revisits=np.asarray(revisits, dtype=np.int64).reshape(-1, 2),
        meta=np.array(json.dumps({"format": FORMAT, "version": FORMAT_VERSION, **meta})),
    )
    _check_arrays(arrays, str(path))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return path.stat().st_size


def load_episode(path: str | os.PathLike, mmap: bool = False) -> Episode:
    """Load and validate one shard; any problem raises `ShardError` naming the file.

    With `mmap=True` the frames stay on disk (a read-only np.memmap into the
    uncompressed zip member), so only the pages of the clips read are loaded.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise ShardError(f"{path}: no such shard file")
    if not zipfile.is_zipfile(path):
        raise ShardError(f"{path}: corrupt or not a shard (not an .npz zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ARRAYS if k not in z.files]
            if missing:
                raise ShardError(f"{path}: not an episode shard, missing arrays {missing} "
                                 f"(has {sorted(z.files)})")
            arrays = {k: z[k] for k in ARRAYS if not (mmap and k == "frames")}
            if mmap:
                arrays["frames"] = _mmap_member(path, z.zip, "frames.npy")
    except ShardError:
        raise
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise ShardError(f"{path}: corrupt or truncated shard ({type(e).__name__}: {e})") from e
    except (ValueError, OSError, KeyError) as e:
        raise ShardError(f"{path}: unreadable shard ({type(e).__name__}: {e})") from e
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as e:
        raise ShardError(f"{path}: meta is not valid JSON ({e})") from e
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ShardError(f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}, "
                         f"this reader supports {FORMAT!r} version {FORMAT_VERSION}")
    _check_arrays(arrays, path)
    return Episode(**arrays, meta=meta, path=path)


def _mmap_member(path: str, zf: zipfile.ZipFile, name: str) -> np.ndarray:
    """Read-only np.memmap of an uncompressed .npy member of the zip `zf` of file `path`."""
    info = zf.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:          # savez_compressed: no mmap, load it
        with zf.open(name) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)                               # zip local file header
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise ShardError(f"{path}: corrupt shard (bad zip header of {name})")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject:
        raise ShardError(f"{path}: {name} holds Python objects; shards never do (no pickle)")
    if offset + int(np.prod(shape)) * dtype.itemsize > os.path.getsize(path):
        raise ShardError(f"{path}: truncated shard ({name} runs past the end of the file)")
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, order="F" if fortran else "C", offset=offset)


def _check_arrays(a: dict, path: str) -> None:
    f = a["frames"]
    if f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3 or f.shape[1] != f.shape[2]:
        raise ShardError(f"{path}: frames must be uint8 [T+1, R, R, 3], got {f.dtype} {list(f.shape)}")
    t = f.shape[0] - 1
    expect = {"actions": (t,), "rewards": (t,), "terminated": (t,), "truncated": (t,),
              "positions": (t + 1, 2), "caption_ids": (t + 1,)}
    for key, shape in expect.items():
        if a[key].shape != shape:
            raise ShardError(f"{path}: {key} has shape {list(a[key].shape)}, expected {list(shape)} "
                             f"for {t + 1} frames")
    ids = a["caption_ids"]
    if ids.size and (ids.min() < 0 or ids.max() >= len(a["caption_table"])):
        raise ShardError(f"{path}: caption_ids out of range of caption_table ({len(a['caption_table'])})")


def list_shards(root: str | os.PathLike) -> list[Path]:
    """Shards of a dataset directory (sorted), or [root] if root is a shard file."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ShardError(f"{root}: no such dataset directory or shard")
    shards = sorted(root.glob(SHARD_GLOB))
    if not shards:
        raise ShardError(f"{root}: no shards ({SHARD_GLOB}) in this directory")
    return shards


def read_manifest(root: str | os.PathLike) -> dict:
    """A dataset directory's manifest.json as a dict; ShardError naming it if it is not one."""
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShardError(f"{path}: no manifest (was the recording finished?)") from None
    except ValueError as e:  # not JSON, or not UTF-8 text
        raise ShardError(f"{path}: manifest is not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise ShardError(f"{path}: manifest must be a JSON object, got {type(manifest).__name__}")
    return manifest
