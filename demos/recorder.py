"""Recording what the player sees: an mp4 of the game frames and an action log.

The video holds the game picture only (scaled to the window size, no HUD), one
video frame per displayed frame at the window's fps. Beside it,
``<name>.actions.json`` lists per video frame the action that produced it, so a
recording of the teacher can be replayed exactly: ``reset(seed, prompt)``, then
the ``start.before`` events (``["step", action, repeat]`` / ``["prompt", text]``
since the last reset), then the frames' actions; prompt changes and resets
during the recording are in ``events``, at the video frame they happened.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

FOURCC = "mp4v"


def stamp() -> str:
    """A file-name-safe local timestamp with milliseconds."""
    now = time.time()
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"-{int(now * 1000) % 1000:03d}"


class VideoRecorder:
    """One mp4 (cv2.VideoWriter, mp4v) plus its JSON action log."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], header: dict[str, Any]):
        import cv2

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = self.path.with_suffix(".actions.json")
        self.size = size  # (width, height) of every written frame
        self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*FOURCC), fps, size)
        if not self._writer.isOpened():
            raise RuntimeError(f"cannot open an {FOURCC} video writer for {self.path} (OpenCV without FFmpeg?)")
        self._log: dict[str, Any] = {**header, "video": self.path.name, "fps": fps, "frames": [], "events": []}

    @property
    def frames(self) -> int:
        return len(self._log["frames"])

    def write(self, rgb: np.ndarray, entry: dict[str, Any]) -> None:
        """Append one frame (``uint8 [H, W, 3]`` RGB, already at ``size``) and its log entry."""
        import cv2

        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self._log["frames"].append(entry)

    def event(self, kind: str, **fields: Any) -> None:
        """Log something that is not a frame (a prompt change, a reset) at the current frame."""
        self._log["events"].append({"at": self.frames, "kind": kind, **fields})

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        self.log_path.write_text(json.dumps(self._log, indent=1))
