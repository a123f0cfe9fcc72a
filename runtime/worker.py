"""Generation on a worker thread, so a window never blocks on the model.

The UI thread submits actions into a bounded queue and polls finished frames;
the worker owns the session and runs every call on it in submission order
(steps and control calls such as `set_prompt`, `save`, `rewind` alike), so
the session is never touched by two threads. A full queue refuses a new
action (the UI keeps showing the last frame: input latency stays bounded
instead of piling up). An exception inside a call comes back from `poll`
(or `call`) in the UI thread; the worker keeps running. `busy_for()` tells a
watchdog how long the current call has been running (a stalled frame).

torch releases the GIL inside its kernels, so the UI thread keeps drawing
while a frame is generated.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .session import Session, StepOutput


class SessionWorker:
    def __init__(self, session: Session, queue_size: int = 2):
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.session = session
        self._todo: queue.Queue = queue.Queue(maxsize=queue_size)
        self._done: queue.Queue = queue.Queue()
        self._busy_since: float | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="echo-infinity-worker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._todo.get()
            if job is None:
                return
            fn, args, future = job
            self._busy_since = time.perf_counter()
            try:
                result = fn(*args)
            except BaseException as e:  # noqa: BLE001  (delivered to the UI thread; never kills the worker)
                result = e
            self._busy_since = None
            if future is None:
                self._done.put(result)
            elif isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def submit(self, action) -> bool:
        """Queue one step; False (nothing queued) when the queue is full."""
        try:
            self._todo.put_nowait((self.session.advance, (action,), None))
            return True
        except queue.Full:
            return False

    def poll(self) -> StepOutput | None:
        """The oldest finished step, or None; re-raises a step's exception here."""
        try:
            result = self._done.get_nowait()
        except queue.Empty:
            return None
        if isinstance(result, BaseException):
            raise result
        return result

    def call(self, fn: Callable[..., Any], *args, timeout: float | None = 30.0) -> Any:
        """Run `fn(*args)` on the worker after the queued steps; wait for its result."""
        future: Future = Future()
        self._todo.put((fn, args, future), timeout=timeout)
        return future.result(timeout=timeout)

    def pending(self) -> int:
        return self._todo.qsize()

    def busy_for(self) -> float:
        """Seconds the current call has been running (0 when idle)."""
        since = self._busy_since
        return 0.0 if since is None else time.perf_counter() - since

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the queued work; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._todo.put(None)
        self._thread.join(timeout)
