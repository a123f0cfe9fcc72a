"""Recording a run: an mp4 of the frames and an action log that replays it exactly.

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


class SessionRecorder:
    """Records a `Session` (one world) as it is stepped, for an exact replay later.

    Step through the recorder instead of the session (`rec.step(action)`,
    `rec.set_prompt(text)`); it writes each frame to the mp4 and logs the action
    and the denoising steps used (the budget may change them), so `replay`
    produces the same frames on the same checkpoint and backend.
    """

    def __init__(self, session, path: Path, seed: int, prompt: str, fps: float = 20.0,
                 start_frame: np.ndarray | None = None):
        if not session.single:
            raise ValueError("SessionRecorder records one world (Session(batch=None))")
        self.session = session
        frame = session.reset(seed=seed, prompt=prompt, start_frame=start_frame)
        R = frame.shape[0]
        header = {"checkpoint": session.checkpoint, "checkpoint_hash": session.checkpoint_hash,
                  "seed": seed, "prompt": prompt, "policy": session.cfg.memory.policy,
                  "start_frame": None if start_frame is None else Path(path).with_suffix(".start.npy").name}
        if start_frame is not None:
            np.save(Path(path).with_suffix(".start.npy"), np.asarray(start_frame), allow_pickle=False)
        self.video = VideoRecorder(Path(path), fps, (R, R), header)
        self.video.write(frame, {"reset": True})

    def step(self, action: int) -> np.ndarray:
        out = self.session.advance(action)
        self.video.write(out.frames[0], {"action": int(action), "steps": out.steps})
        return out.frames[0]

    def set_prompt(self, text: str) -> None:
        self.session.set_prompt(text)
        self.video.event("prompt", text=text)

    def close(self) -> Path:
        self.video.close()
        return self.video.log_path


class ReplayError(ValueError):
    """A session log that cannot be replayed; the message names the file and what is wrong."""


def read_log(log_path: str | Path) -> dict:
    """A `SessionRecorder` log, checked: one `ReplayError` for a missing, non-JSON or malformed
    file (no key or type error from deep inside the replay)."""
    log_path = Path(log_path)
    try:
        log = json.loads(log_path.read_text())
    except FileNotFoundError:
        raise ReplayError(f"{log_path}: no such session log") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReplayError(f"{log_path}: not a session log (unreadable JSON: {e})") from None
    def bad(what: str):
        return ReplayError(f"{log_path}: not a session log of this version ({what})")
    if not isinstance(log, dict):
        raise bad(f"a JSON {type(log).__name__}, not an object")
    for key, kind in (("checkpoint_hash", str), ("seed", int), ("prompt", str), ("frames", list), ("events", list)):
        if not isinstance(log.get(key), kind) or isinstance(log.get(key), bool):
            raise bad(f"{key!r} missing or not a {kind.__name__}")
    first = log["frames"][0] if log["frames"] else None
    if not (isinstance(first, dict) and first.get("reset")):
        raise bad("the first frame entry is not the reset")
    for i, entry in enumerate(log["frames"][1:], start=1):
        if not (isinstance(entry, dict) and type(entry.get("action")) is int and type(entry.get("steps")) is int):
            raise bad(f"frame entry {i} needs int 'action' and 'steps', got {entry!r}"[:200])
    for e in log["events"]:
        if not (isinstance(e, dict) and type(e.get("at")) is int and isinstance(e.get("kind"), str)):
            raise bad(f"event {e!r} needs int 'at' and str 'kind'"[:200])
        if e["kind"] == "prompt" and not isinstance(e.get("text"), str):
            raise bad(f"prompt event {e!r} has no text"[:200])
    start = log.get("start_frame")
    if start is not None and not isinstance(start, str):
        raise bad("'start_frame' is not a file name")
    return log


def replay(log_path: str | Path, session) -> np.ndarray:
    """Re-run a `SessionRecorder` log on `session`; returns all frames uint8 [T, H, W, 3].
    A bad log is one `ReplayError` (ValueError) before anything is stepped."""
    log_path = Path(log_path)
    log = read_log(log_path)
    if log["checkpoint_hash"] != session.checkpoint_hash:
        raise ReplayError(f"{log_path} was recorded on checkpoint {log['checkpoint_hash'][:12]}, "
                          f"this session runs {session.checkpoint_hash[:12]}")
    start = None
    if log.get("start_frame"):
        path = log_path.parent / log["start_frame"]
        try:
            start = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ReplayError(f"{path}: the log's start frame cannot be read ({e})") from None
    frames = [session.reset(seed=log["seed"], prompt=log["prompt"], start_frame=start)]
    events = {}
    for e in log["events"]:
        events.setdefault(e["at"], []).append(e)
    budget, steps = session.budget, session.fixed_steps
    session.budget = None  # replay the logged steps, not new choices
    try:
        for i, entry in enumerate(log["frames"][1:], start=1):
            for e in events.get(i, []):
                if e["kind"] == "prompt":
                    session.set_prompt(e["text"])
            session.fixed_steps = entry["steps"]
            frames.append(session.step(entry["action"]))
    finally:
        session.budget, session.fixed_steps = budget, steps
    return np.stack(frames)
