"""A PyTorch dataset that streams fixed-length clips from episode shards.

The shard format is in `envs.shards`; its names are re-exported here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .shards import (  # noqa: F401  (re-exported)
    ARRAYS, FORMAT, FORMAT_VERSION, MANIFEST, SHARD_GLOB, Episode, ShardError, list_shards, load_episode, read_manifest, shard_name, write_episode,
)


class ClipDataset(IterableDataset):
    """Streams fixed-length clips from episode shards without loading them whole.

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
    slice, opens `shards_in_memory` shards at a time (frames memory-mapped,
    so only the clips read come off disk), shuffles their clip starts (a
    random phase, then every `stride` frames; plus `switch_clips` more around
    every caption change, each placing the change at a random frame 1..L-1 of
    its clip, so prompt switches are common, not ~6% of clips) and yields them. Clips may end
    on an episode's last frame (its end and last reward are that frame's targets; the step
    out of it, which does not exist, reads NOOP), and an episode that ended by termination
    always gives the clip ending there; episodes of fewer than `clip_len` frames give no
    clips. `epochs=None` repeats forever; `set_epoch(e)` picks the epoch an iteration starts at.
    """

    def __init__(self, root: str | os.PathLike | Sequence[str | os.PathLike], clip_len: int,
                 stride: int | None = None, shuffle: bool = True, seed: int = 0,
                 epochs: int | None = 1, shards_in_memory: int = 4, normalize: bool = False,
                 rank: int = 0, world_size: int = 1, switch_clips: int = 0):
        super().__init__()
        if isinstance(root, (str, os.PathLike)):
            self.shards = [str(p) for p in list_shards(root)]
        else:
            self.shards = [str(p) for p in root]
        if not self.shards:
            raise ShardError("ClipDataset: no shards given")
        if clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {clip_len}")
        if switch_clips < 0:
            raise ValueError(f"switch_clips must be >= 0, got {switch_clips}")
        self.switch_clips = switch_clips
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
                episodes = [load_episode(p, mmap=True) for p in shards[g:g + self.shards_in_memory]]
                starts = [(e, s) for e in episodes for s in self._starts(e, rng)]
                order = rng.permutation(len(starts)) if self.shuffle else range(len(starts))
                for k in order:
                    yield self._clip(*starts[k])
            epoch += 1

    def _starts(self, ep: Episode, rng) -> list[int]:
        # T steps give T + 1 frames; a clip may end on the last one, the frame an episode's end
        # (terminated) and its last reward belong to (frame j's targets are step j - 1's)
        last = ep.length + 1 - self.clip_len
        if last < 0:
            return []
        phase = int(rng.integers(min(self.stride, last + 1))) if self.shuffle else 0
        starts = list(range(phase, last + 1, self.stride))
        if ep.ended and starts[-1] != last:
            starts.append(last)  # an episode's end, the done head's only positive, is always drawn
        if self.switch_clips and self.clip_len > 1:
            changes = np.flatnonzero(np.diff(ep.caption_ids[:ep.length])) + 1  # first frame of a new caption
            for c in changes:
                at = rng.integers(1, self.clip_len, size=self.switch_clips)  # where in the clip it falls
                starts += [int(s) for s in np.clip(c - at, 0, last)]
        return starts

    def _clip(self, ep: Episode, s: int) -> dict:
        e = s + self.clip_len
        frames = torch.from_numpy(ep.frames[s:e].copy())  # [L, R, R, 3]

        def steps(x: np.ndarray) -> torch.Tensor:  # [L]: no step leaves the last frame: 0 (NOOP)
            x = x[s:e]
            return torch.from_numpy(np.concatenate([x, np.zeros(self.clip_len - len(x), x.dtype)]))

        if self.normalize:
            frames = frames.float().div_(127.5).sub_(1.0)
        return {
            "frames": frames,
            "actions": steps(ep.actions),
            "rewards": steps(ep.rewards),
            "terminated": steps(ep.terminated),
            "truncated": steps(ep.truncated),
            "positions": torch.from_numpy(ep.positions[s:e].copy()),
            "captions": [str(c) for c in ep.caption_table[ep.caption_ids[s:e]]],
            "episode": ep.path,
            "start": s,
        }

    def num_clips(self) -> int:
        """Clips per epoch over all shards (an upper bound when shuffling: the random phase
        of the clip starts can drop one per episode). Reads manifest.json when it lists every shard."""
        episodes = _episodes_from_manifest(self.shards)
        if episodes is None:
            episodes = [(ep.length, ep.ended) for ep in map(load_episode, self.shards)]
        L, n = self.clip_len, 0
        for t, ended in episodes:  # t steps, t + 1 frames
            if t + 1 >= L:
                n += math.ceil((t + 2 - L) / self.stride) + int(ended and (t + 1 - L) % self.stride != 0)
        return n


def _episodes_from_manifest(shards: Sequence[str]) -> list[tuple[int, bool]] | None:
    """(steps, ended by termination) of every shard, from the manifests; None if one lacks it."""
    roots = {str(Path(p).parent) for p in shards}
    known: dict[str, tuple[int, bool]] = {}
    for root in roots:
        try:
            for item in read_manifest(root)["episodes"]:
                known[str(Path(root) / item["file"])] = (int(item["length"]), bool(item["terminated"]))
        except (ShardError, KeyError, TypeError):
            return None
    if not all(p in known for p in shards):
        return None
    return [known[p] for p in shards]


def collate_clips(items: list[dict]) -> dict:
    """Stack clips into a batch: tensors get a leading B, captions become [B][L] lists."""
    # np.stack, not torch.stack: a plain memcpy, where torch's intra-op threads cost
    # ~40x more for uint8 frames on a busy 2-core machine.
    out = {k: torch.from_numpy(np.stack([it[k].numpy() for it in items])) for k in
           ("frames", "actions", "rewards", "terminated", "truncated", "positions")}
    out["captions"] = [it["captions"] for it in items]
    out["episode"] = [it["episode"] for it in items]
    out["start"] = torch.tensor([it["start"] for it in items])
    return out


def whole_episodes(shards: Sequence[str]) -> Iterator[dict]:
    """Every recorded episode once, as a batch of one clip (frames uint8 [1, T + 1, R, R, 3],
    actions / terminated / rewards [1, T + 1] with the missing step out of the last frame NOOP,
    positions [1, T + 1, 2]): what a count over all the recordings reads (world/passability.py,
    world/spawn.py)."""
    for path in shards:
        ep = load_episode(path)  # in memory, one episode at a time
        pad = lambda x: torch.from_numpy(np.concatenate([x, np.zeros(1, x.dtype)]))[None]  # noqa: E731
        yield {"frames": torch.from_numpy(ep.frames)[None], "actions": pad(ep.actions),
               "terminated": pad(ep.terminated), "rewards": pad(ep.rewards),
               "positions": torch.from_numpy(ep.positions)[None]}


def clip_batches(shards: Sequence[str], seed: int = 0, rank: int = 0, world_size: int = 1):
    """The trainer's data source (`world.train.Batches`): batches(clip_len, batch, switch_clips=0)
    -> an endless iterator of collated clips from `shards`, clip starts every clip_len // 2 frames."""

    def batches(clip_len: int, batch: int, switch_clips: int = 0):
        data = ClipDataset(shards, clip_len, stride=max(1, clip_len // 2), seed=seed, epochs=None,
                           rank=rank, world_size=world_size, switch_clips=switch_clips)
        return iter(torch.utils.data.DataLoader(data, batch_size=batch, collate_fn=collate_clips))

    return batches
