"""A watchdog around any frame source: generation on a worker thread, restarts on faults.

The kiosk runs unattended for days, so nothing that goes wrong inside
generation may take its window down. :class:`Watchdog` wraps a
:class:`demos.source.FrameSource` (it is one itself) and runs every call on a
``runtime.worker.SessionWorker`` thread:

- a step that raises, or reports ``info["fault"]`` (the model source's
  ``FrameError``, a non-finite frame), restarts the world: ``reset`` with the
  last seed and prompt, on the same source;
- a step still running ``stall_s`` seconds after it was submitted is a stalled
  frame: the worker is abandoned (a Python thread cannot be killed; it is a
  daemon that holds only the old source), the ``factory`` builds a fresh
  source, and the world restarts on it;
- if even that fails (the checkpoint is gone, say), the last frame stays up
  and the restart is tried again every ``retry_s`` seconds.

Every restart is logged with its traceback and reported once in the step's
``info["restarted"]``. The window never waits on a step for more than
``frame_wait_s``: a step not done by then leaves the last frame on screen with
``info["late"] = True`` (that frame's action is not played) and is collected
on a later frame. Control calls (prompt, save, load, rewind, reset) wait for
the step in flight, then run on the worker too, each bounded by ``stall_s``;
their user errors (``ValueError``, ``OSError``) reach the caller as before,
anything else restarts the world and comes back as a ``ValueError`` saying so.

Stalls are timed with ``clock`` (injectable, so tests need no real waiting);
it plays the part of ``SessionWorker.busy_for`` with a clock the tests own.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from demos.source import ACTION_MEANINGS, FrameSource

LOG = logging.getLogger("echo_infinity.watchdog")
USER_ERRORS = (ValueError, OSError)  # what a source raises for bad input; not a fault


class _Fault(Exception):
    """A call on the source failed (not a user error) or stalled; ``stalled``: the worker is stuck."""

    def __init__(self, reason: str, exc: BaseException | None = None, stalled: bool = False):
        super().__init__(reason)
        self.reason, self.exc, self.stalled = reason, exc, stalled


class _Steps:
    """What ``SessionWorker`` calls ``session.advance``: one step of the source."""

    def __init__(self, source: FrameSource):
        self.advance = source.step


class Watchdog:
    """``factory()`` builds the source (again after a stall); see the module docstring."""

    def __init__(self, factory: Callable[[], FrameSource], *, stall_s: float = 5.0, frame_wait_s: float = 0.05,
                 retry_s: float = 5.0, clock: Callable[[], float] = time.monotonic, log: logging.Logger = LOG):
        if stall_s <= 0 or frame_wait_s < 0 or retry_s <= 0:
            raise ValueError(f"need stall_s > 0, frame_wait_s >= 0, retry_s > 0; got {stall_s}, {frame_wait_s}, {retry_s}")
        self.factory = factory
        self.stall_s, self.frame_wait_s, self.retry_s = stall_s, frame_wait_s, retry_s
        self.clock, self.log = clock, log
        self.restarts = 0
        self.last_fault = ""
        self.info: dict[str, Any] = {}
        self._seed, self._prompt = 0, None
        self._pending = False  # a step submitted and not collected yet
        self._submitted_at = 0.0
        self._retry_at = 0.0  # when to try again while the source could not be rebuilt
        self._restarted: str | None = None  # reported with the next step
        self.source: FrameSource | None = None
        self.worker = None
        self._build()  # a source that cannot be built at all is the caller's error
        self.name, self.resolution = self.source.name, self.source.resolution
        self.motion = getattr(self.source, "motion", "smooth")  # fixed by the checkpoint: a rebuild keeps it
        self.action_meanings = list(getattr(self.source, "action_meanings", ACTION_MEANINGS))
        self.frame = np.zeros((self.resolution, self.resolution, 3), np.uint8)  # until the first reset

    # -- what a FrameSource has -------------------------------------------------------
    @property
    def can_snapshot(self) -> bool:
        return self.source is not None and bool(self.source.can_snapshot)

    @property
    def no_snapshot(self) -> str:
        if self.source is None:
            return "the world is restarting"
        return getattr(self.source, "no_snapshot", "this source cannot be saved")

    @property
    def prompt(self) -> str | None:
        return getattr(self.source, "prompt", self._prompt) if self.source is not None else self._prompt

    def __getattr__(self, name: str) -> Any:
        # labels, meta, ...: the source's own, when there is one
        source = self.__dict__.get("source")
        if source is None or name.startswith("_"):
            raise AttributeError(name)
        return getattr(source, name)

    def reset(self, seed: int, prompt: str | None = None) -> np.ndarray:
        """A fresh world; a fault while making it restarts it (never raises but for a bad prompt)."""
        self._seed, self._prompt = seed, prompt
        if self.source is None:
            return self.frame  # a restart is pending: it will use this seed and prompt
        try:
            self.frame = self._call("reset", seed, prompt)
        except _Fault as f:
            self._restart(f.reason, f.exc, rebuild=True)
            return self.frame
        self.info = dict(getattr(self.source, "info", {}))
        return self.frame

    def step(self, action: int) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        if self.source is None:  # broken: keep the last frame up, retry now and then
            if self.clock() >= self._retry_at:
                self._restart("retrying the restart", rebuild=True)
            return self._no_step()
        if not self._pending:
            self.worker.submit(action)
            self._pending, self._submitted_at = True, self.clock()
        result = self._collect(self.frame_wait_s)
        if result is None:
            if self.clock() - self._submitted_at > self.stall_s:
                self._restart(f"a frame stalled: still generating after {self.stall_s:g} s", rebuild=True)
            return self._no_step()
        if isinstance(result, BaseException):
            self._restart(f"a frame failed: {type(result).__name__}: {result}", result)
            return self._no_step()
        if fault := result[3].get("fault"):  # a fault the source reported instead of raising
            self._restart(f"a frame failed: {fault}")
            return self._no_step()
        self.frame, reward, done, self.info = result
        return self.frame, reward, done, self.info

    def set_prompt(self, text: str) -> None:
        self._control("set_prompt", text)
        self._prompt = text

    def save(self, path: Path) -> Path:
        return self._control("save", path)

    def load(self, path: Path) -> np.ndarray:
        self.frame = self._control("load", path)
        self._prompt = getattr(self.source, "prompt", self._prompt)
        return self.frame

    def rewind(self, seconds: float) -> np.ndarray:
        self.frame = self._control("rewind", seconds)
        return self.frame

    def hud_fields(self, info: dict[str, Any]) -> list[tuple[str, str]]:
        fields = self.source.hud_fields(info) if self.source is not None else [("world", "restarting...")]
        if self.restarts:
            fields.append(("restarts", f"{self.restarts} (last: {_clip(self.last_fault, 40)})"))
        return fields

    def close(self) -> None:
        """Stop the worker; the source is closed unless a stalled call still holds it. Safe twice."""
        self._abandon(close_source=True)

    # -- the worker -------------------------------------------------------------------
    def _build(self) -> None:
        from runtime.worker import SessionWorker

        source = self.factory()
        self.source, self.worker, self._pending = source, SessionWorker(_Steps(source), queue_size=1), False

    def _abandon(self, close_source: bool = False) -> None:
        """Let go of the worker (and its source), whatever it is doing."""
        worker, source = self.worker, self.source
        self.worker, self.source, self._pending = None, None, False
        if worker is None:
            return
        stuck = worker.busy_for() > 0
        worker.close(timeout=0 if stuck else 5.0)
        if close_source and not stuck and source is not None:
            source.close()

    def _collect(self, timeout: float) -> Any:
        """The pending step's result (or its exception), waiting up to ``timeout`` s; None if not done."""
        deadline = time.perf_counter() + timeout
        while True:
            try:
                result = self.worker.poll()
            except Exception as e:  # noqa: BLE001 - the step's own exception, re-raised by poll
                result = e
            if result is not None:
                self._pending = False
                return result
            if time.perf_counter() >= deadline:
                return None
            time.sleep(0.001)

    def _call(self, method: str, *args: Any) -> Any:
        """Run ``source.method(*args)`` on the worker once the step in flight is done.

        User errors propagate; a failure or a stall (of this call or of the step
        before it) raises :class:`_Fault`.
        """
        if self._pending:  # one call at a time on the source: settle the step in flight
            result = self._collect(self.stall_s)
            if result is None:
                raise _Fault(f"a frame stalled: still generating after {self.stall_s:g} s", stalled=True)
            if isinstance(result, BaseException):
                raise _Fault(f"a frame failed: {type(result).__name__}: {result}", result)
            self.frame, _, _, self.info = result
        try:
            return self.worker.call(getattr(self.source, method), *args, timeout=self.stall_s)
        except (TimeoutError, queue.Full):
            raise _Fault(f"{method} stalled for more than {self.stall_s:g} s", stalled=True) from None
        except USER_ERRORS:
            raise
        except Exception as e:
            raise _Fault(f"{method} failed: {type(e).__name__}: {e}", e) from e

    def _control(self, method: str, *args: Any) -> Any:
        """A control call: a fault restarts the world and comes back as a ValueError saying so."""
        if self.source is None:
            raise ValueError("the world is restarting")
        try:
            return self._call(method, *args)
        except _Fault as f:
            self._restart(f.reason, f.exc, rebuild=f.stalled)
            raise ValueError(f"{method} not done ({f.reason}); the world restarted") from None

    # -- restarts ---------------------------------------------------------------------
    def _restart(self, reason: str, exc: BaseException | None = None, rebuild: bool = False) -> None:
        """A fresh world with the last seed and prompt; never raises."""
        self.restarts += 1
        self.last_fault = reason
        self.log.error("watchdog: %s; restarting the world (restart #%d)", reason, self.restarts,
                       exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None)
        try:
            if rebuild or self.source is None:
                self._abandon()
                self._build()
            self.frame = self._call("reset", self._seed, self._prompt)
        except Exception as e:  # noqa: BLE001 - whatever it is, the window stays up and retries
            self.log.error("watchdog: the restart failed (%s); trying again in %g s",
                           e.reason if isinstance(e, _Fault) else f"{type(e).__name__}: {e}", self.retry_s,
                           exc_info=not isinstance(e, _Fault))
            self._abandon()
            self._retry_at = self.clock() + self.retry_s
            self._restarted = None
            return
        self._restarted = reason
        self.info = dict(getattr(self.source, "info", {}))
        self.log.info("watchdog: the world restarted (seed %s, prompt %r)", self._seed, self._prompt)

    def _no_step(self) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        """No step played this time: the last frame again, ``late`` (and ``restarted`` once after a restart)."""
        info = {**self.info, "late": True}
        if self._restarted is not None:
            info["restarted"], self._restarted = self._restarted, None
        elif self.source is None:
            info["broken"] = True
        return self.frame, 0.0, False, info


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
