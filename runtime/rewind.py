"""Rewind: snapshots of the last few seconds in a fixed-size ring.

The world state is constant-size, so keeping one snapshot every `every` frames
for the last `seconds` costs constant memory: the ring is allocated on the
first push (one copy of the state per slot) and then written in place.
"""
from __future__ import annotations

from typing import Callable

import torch


class RewindBuffer:
    def __init__(self, seconds: float = 5.0, fps: float = 20.0, every: int = 10):
        if seconds <= 0 or fps <= 0 or every < 1:
            raise ValueError(f"need seconds > 0, fps > 0, every >= 1; got {seconds}, {fps}, {every}")
        self.every = every
        self.capacity = max(1, round(seconds * fps / every))
        self._slots: list[dict[str, torch.Tensor]] = []
        self._frames: list[int] = []
        self._next = 0  # slot the next push writes
        self._count = 0  # valid slots

    def maybe_push(self, frame_index: int, state: Callable[[], dict[str, torch.Tensor]]) -> bool:
        """Keep `state()` if `frame_index` falls on the snapshot cadence (the state is
        only built then: a snapshot is a copy of the whole world)."""
        if frame_index % self.every:
            return False
        self.push(frame_index, state())
        return True

    def push(self, frame_index: int, state: dict[str, torch.Tensor]) -> None:
        if len(self._slots) < self.capacity:
            self._slots.append({k: v.detach().clone() for k, v in state.items()})
            self._frames.append(frame_index)
        else:
            slot = self._slots[self._next]
            if slot.keys() != state.keys():
                raise ValueError("state tensors changed between pushes; clear() the buffer after a reset")
            for k, v in state.items():
                slot[k].copy_(v)
            self._frames[self._next] = frame_index
        self._next = (self._next + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def rewind(self, snapshots_back: int = 1) -> tuple[int, dict[str, torch.Tensor]]:
        """Drop the newest `snapshots_back - 1` snapshots and return (frame, state) of the next.

        The returned snapshot stays in the ring (rewinding again goes further back
        only after it is popped); raises IndexError when the buffer is empty.
        """
        if self._count == 0:
            raise IndexError("nothing to rewind to yet")
        back = min(max(1, snapshots_back), self._count)
        self._next = (self._next - (back - 1)) % self.capacity
        self._count -= back - 1
        i = (self._next - 1) % self.capacity
        return self._frames[i], {k: v.clone() for k, v in self._slots[i].items()}

    def clear(self) -> None:
        self._slots.clear()
        self._frames.clear()
        self._next = self._count = 0

    def __len__(self) -> int:
        return self._count
