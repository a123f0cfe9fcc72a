"""Episode shards on disk, and a PyTorch dataset that streams clips from them.

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
import math
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

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


def load_episode(path: str | os.PathLike) -> Episode:
    """Load and validate one shard; any problem raises `ShardError` naming the file."""
    path = str(path)
    if not os.path.isfile(path):
        raise ShardError(f"{path}: no such shard file")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ARRAYS if k not in z.files]
            if missing:
                raise ShardError(f"{path}: not an episode shard, missing arrays {missing} "
                                 f"(has {sorted(z.files)})")
            arrays = {k: z[k] for k in ARRAYS}
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
    path = Path(root) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ShardError(f"{path}: no manifest (was the recording finished?)") from None
    except json.JSONDecodeError as e:
        raise ShardError(f"{path}: manifest is not valid JSON ({e})") from e


class ClipDataset(IterableDataset):
    """Streams fixed-length clips from episode shards, one shard group in memory at a time.

    Each item is a dict (L = `clip_len`, R = resolution):

        frames      uint8 [L, R, R, 3]  (float32 in [-1, 1] with normalize=True)
        actions     int64 [L]           actions[i] taken at frames[i] (led to the frame after)
        rewards     float32 [L]         reward of actions[i]
        terminated  bool [L]            actions[i] ended the episode
        truncated   bool [L]
        positions   int64 [L, 2]        player world position per frame
        captions    list[str] of L      caption per frame
        episode     str                 shard path
        start       int                 index of frames[0] in the episode

    Use `collate_clips` as the DataLoader's collate_fn (captions become [B][L]).

    Order: each epoch shuffles the shard list (seed, epoch), gives every
    DataLoader worker (and every DDP rank, via `rank`/`world_size`) a disjoint
    slice, loads `shards_in_memory` shards, shuffles their clip starts (a
    random phase, then every `stride` frames) and yields them. Episodes shorter
    than `clip_len` steps give no clips. `epochs=None` repeats forever;
    `set_epoch(e)` picks the epoch an iteration starts at.
    """

    def __init__(self, root: str | os.PathLike | Sequence[str | os.PathLike], clip_len: int,
                 stride: int | None = None, shuffle: bool = True, seed: int = 0,
                 epochs: int | None = 1, shards_in_memory: int = 4, normalize: bool = False,
                 rank: int = 0, world_size: int = 1):
        super().__init__()
        if isinstance(root, (str, os.PathLike)):
            self.shards = [str(p) for p in list_shards(root)]
        else:
            self.shards = [str(p) for p in root]
        if not self.shards:
            raise ShardError("ClipDataset: no shards given")
        if clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {clip_len}")
        self.clip_len, self.stride = clip_len, stride or clip_len
        self.shuffle, self.seed, self.epochs = shuffle, seed, epochs
        self.shards_in_memory, self.normalize = max(1, shards_in_memory), normalize
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _my_shards(self, epoch: int) -> list[str]:
        shards = list(self.shards)
        if self.shuffle:
            np.random.default_rng([self.seed, epoch]).shuffle(shards)
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        n, i = self.world_size * workers, self.rank * workers + worker
        return shards[i::n]

    def __iter__(self) -> Iterator[dict]:
        epoch = self.epoch
        while self.epochs is None or epoch < self.epoch + self.epochs:
            shards = self._my_shards(epoch)
            info = get_worker_info()
            rng = np.random.default_rng([self.seed, epoch, self.rank, info.id if info else 0])
            for g in range(0, len(shards), self.shards_in_memory):
                episodes = [load_episode(p) for p in shards[g:g + self.shards_in_memory]]
                starts = [(e, s) for e in episodes for s in self._starts(e, rng)]
                order = rng.permutation(len(starts)) if self.shuffle else range(len(starts))
                for k in order:
                    yield self._clip(*starts[k])
            epoch += 1

    def _starts(self, ep: Episode, rng) -> range:
        last = ep.length - self.clip_len                 # clip needs actions for all L frames
        if last < 0:
            return range(0)
        phase = int(rng.integers(min(self.stride, last + 1))) if self.shuffle else 0
        return range(phase, last + 1, self.stride)

    def _clip(self, ep: Episode, s: int) -> dict:
        e = s + self.clip_len
        frames = torch.from_numpy(ep.frames[s:e].copy())  # [L, R, R, 3]
        if self.normalize:
            frames = frames.float().div_(127.5).sub_(1.0)
        return {
            "frames": frames,
            "actions": torch.from_numpy(ep.actions[s:e].copy()),
            "rewards": torch.from_numpy(ep.rewards[s:e].copy()),
            "terminated": torch.from_numpy(ep.terminated[s:e].copy()),
            "truncated": torch.from_numpy(ep.truncated[s:e].copy()),
            "positions": torch.from_numpy(ep.positions[s:e].copy()),
            "captions": [str(c) for c in ep.caption_table[ep.caption_ids[s:e]]],
            "episode": ep.path,
            "start": s,
        }

    def num_clips(self, epoch: int | None = None) -> int:
        """Clips per epoch over all shards (reads the manifest if every shard is listed there)."""
        lengths = _lengths_from_manifest(self.shards)
        if lengths is None:
            lengths = [load_episode(p).length for p in self.shards]
        return sum(max(0, math.ceil((t - self.clip_len + 1) / self.stride)) for t in lengths
                   if t >= self.clip_len)


def _lengths_from_manifest(shards: Sequence[str]) -> list[int] | None:
    roots = {str(Path(p).parent) for p in shards}
    known: dict[str, int] = {}
    for root in roots:
        try:
            for item in read_manifest(root)["episodes"]:
                known[str(Path(root) / item["file"])] = int(item["length"])
        except (ShardError, KeyError, TypeError):
            return None
    if not all(p in known for p in shards):
        return None
    return [known[p] for p in shards]


def collate_clips(items: list[dict]) -> dict:
    """Stack clips into a batch: tensors get a leading B, captions become [B][L] lists."""
    out = {k: torch.stack([it[k] for it in items]) for k in
           ("frames", "actions", "rewards", "terminated", "truncated", "positions")}
    out["captions"] = [it["captions"] for it in items]
    out["episode"] = [it["episode"] for it in items]
    out["start"] = torch.tensor([it["start"] for it in items])
    return out
