"""Fit the game to the machine: the fastest backend and thread count, and a budget it can hold.

Frame cost differs ~3x between the CPUs this project runs on (docs/RESULTS.md),
so `play`, `kiosk` and World-v0 do not take their speed from constants. A
calibration, run once per machine and checkpoint (a second or two; cached as
JSON), times each candidate (backend, threads) on the checkpoint's own model:

1. a backend other than eager `torch` must first match it (same state, same
   actions: the decoded frames may differ by rounding only, `PARITY_MAX_LEVELS`);
2. each candidate steps `frames` frames at the budget's floor of denoising
   steps (`BudgetConfig.min_steps`) after a warm-up; the one with the lowest
   median frame time wins;
3. the budget is the highest of `FPS_CHOICES` whose frame time covers the
   winner's 99th-percentile step plus `HEADROOM` for the window, input and HUD,
   i.e. about 1% of frames expected over budget at most.

Explicit flags win over every choice here (`--backend`, `--threads`, `--fps`).
The cache key covers the CPU, torch and onnxruntime versions, the checkpoint's
hash and the candidates, so a new machine, library or model calibrates again.
A calibration timed while other processes held the cores (the timing thread
waited for a core, runnable, more than `BUSY_WAIT_SHARE` of the time: Linux's
/proc/thread-self/schedstat) measured the load, not the machine: it is used
for this run, said so, and not cached, so the next start on a quieter machine
measures again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engines.backend import default_cache_dir
from engines.registry import available_backends, make_backend
from world.bench import count_flops, gemm_gflops
from world.model import WorldModel

from .budget import BudgetConfig

FPS_CHOICES = (30.0, 20.0, 15.0, 10.0)
HEADROOM = 1.25  # the frame's share of the budget: the window, the input and the HUD need the rest
PARITY_FRAMES = 6
PARITY_MAX_LEVELS = 8  # largest per-pixel difference (of 255) a backend may show against eager torch
VERSION = 1  # of the cached JSON
BUSY_WAIT_SHARE = 0.15  # the timing thread waited for a core this share of the time or more: busy


@dataclass
class Calibration:
    """What a calibration chose, and what it measured for every candidate."""

    backend: str
    threads: int
    fps: float
    frame_ms_p50: float
    frame_ms_p99: float
    steps: int  # the denoising steps each frame was timed at (the budget's floor)
    candidates: list[dict] = field(default_factory=list)  # {backend, threads, p50_ms, p99_ms} or {.., skipped}
    frame_gflop: float = 0.0  # matmul/conv/attention work of one frame (world.bench.count_flops)
    machine_gemm_gflops: float = 0.0  # this machine's fp32 matmul rate at the chosen threads
    matmul_share: float = 0.0  # the chosen frame's GFLOP/s over that rate (compares across machines)
    machine: dict = field(default_factory=dict)
    waited_share: float = 0.0  # the most any candidate's timing thread waited for a core, over its wall time
    seconds: float = 0.0  # time the calibration took (0 when read from the cache)
    cached: bool = False

    @property
    def busy(self) -> bool:
        """Other processes held the cores while this was timed: the figures measure the load."""
        return self.waited_share > BUSY_WAIT_SHARE

    def line(self) -> str:
        """One line for the terminal, the kiosk log and the HUD's notice."""
        src = "cached calibration" if self.cached else f"calibrated in {self.seconds:.1f} s"
        busy = (f"; the machine was busy (the timing waited for a core {self.waited_share:.0%} of the time), "
                "so this is not cached and the next start measures again") if self.busy else ""
        return (f"{src}: {self.backend}, {self.threads} thread{'s' if self.threads > 1 else ''}, "
                f"{self.frame_ms_p50:.1f} ms a frame (p99 {self.frame_ms_p99:.1f}, {self.matmul_share:.0%} of this "
                f"machine's matmul rate) -> {self.fps:g} fps budget{busy}")


def machine_id() -> dict:
    """What makes frame cost differ between machines: the CPU, its cores, the libraries."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime
        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch": torch.__version__, "onnxruntime": ort, "python": platform.python_version()}


def pick_fps(frame_p99_s: float, choices=FPS_CHOICES, headroom: float = HEADROOM) -> float:
    """The highest frame rate whose budget holds the frame's p99 with headroom; the lowest otherwise."""
    for fps in sorted(choices, reverse=True):
        if frame_p99_s * headroom <= 1.0 / fps:
            return fps
    return min(choices)


def cache_path(cache_dir: str | Path | None, key: str) -> Path:
    return Path(cache_dir or default_cache_dir()) / "calibration" / f"{key}.json"


def calibration_key(machine: dict, checkpoint_hash: str, candidates, device: str, fps_choices) -> str:
    blob = json.dumps([VERSION, machine, checkpoint_hash, [list(c) for c in candidates], device,
                       list(fps_choices)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _runqueue_wait() -> float | None:
    """Seconds the calling thread has spent runnable but waiting for a core (None off Linux)."""
    try:
        return int(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _time_frames(backend, model: WorldModel, steps: int, frames: int, warmup: int,
                 seed: int) -> tuple[np.ndarray, float]:
    """-> (seconds of each timed frame, the share of them this thread waited for a core)."""
    state = model.init_state(1, seed=seed)
    rng = np.random.default_rng(seed)
    actions = torch.from_numpy(rng.integers(0, model.cfg.dit.num_actions, size=(warmup + frames, 1)))
    out = np.zeros(frames)
    for i in range(warmup + frames):
        if i == warmup:
            wait0 = _runqueue_wait()
        t0 = time.perf_counter()
        backend.step(state, actions[i], steps)
        if i >= warmup:
            out[i - warmup] = time.perf_counter() - t0
    wait1 = _runqueue_wait()
    waited = 0.0 if wait0 is None or wait1 is None else (wait1 - wait0) / max(float(out.sum()), 1e-9)
    return out, waited


def parity_levels(backend, reference, model: WorldModel, steps: int, frames: int = PARITY_FRAMES) -> int:
    """Largest per-pixel difference between two backends' frames over the same streamed run."""
    states = [model.init_state(1, seed=7), model.init_state(1, seed=7)]
    worst = 0
    for i in range(frames):
        a = torch.tensor([i % model.cfg.dit.num_actions])
        f = [b.step(s, a, steps).frame.int() for b, s in zip((backend, reference), states)]
        worst = max(worst, int((f[0] - f[1]).abs().max()))
    return worst


def calibrate(model: WorldModel, checkpoint_hash: str, candidates: list[tuple[str, int]], *,
              frames: int = 40, warmup: int = 5, fps_choices=FPS_CHOICES, device: str = "cpu",
              cache_dir: str | Path | None = None, use_cache: bool = True, seed: int = 0,
              say: Callable[[str], object] = print) -> Calibration:
    """Time the candidates on `model` and choose (cached per machine and checkpoint; see the module doc).

    The process's torch thread count is left as the winner's (the caller runs with it)."""
    if frames < 5:
        raise ValueError(f"frames must be >= 5 (a p99 of fewer says nothing), got {frames}")
    candidates = [(str(b), int(t)) for b, t in candidates]
    if not candidates:
        raise ValueError("calibrate needs at least one (backend, threads) candidate")
    machine = machine_id()
    key = calibration_key(machine, checkpoint_hash, candidates, device, fps_choices)
    path = cache_path(cache_dir, key)
    if use_cache and path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("version") == VERSION:
                data.pop("version")
                cal = Calibration(**{**data, "cached": True, "seconds": 0.0})
                torch.set_num_threads(cal.threads)
                return cal
        except (OSError, ValueError, TypeError):
            pass  # a damaged cache entry is measured again and rewritten
    t_start = time.perf_counter()
    steps = BudgetConfig().min_steps
    usable = available_backends(device)
    model = model.eval().to(device)
    reference = make_backend("torch", model, 1, device=device)
    results, best, waited = [], None, 0.0
    say(f"calibrating the frame cost on this machine ({len(candidates)} candidates, cached afterwards) ...")
    for name, threads in candidates:
        row = {"backend": name, "threads": threads}
        results.append(row)
        if usable.get(name, "unknown backend") is not None:
            row["skipped"] = usable.get(name, "unknown backend")
            continue
        torch.set_num_threads(threads)
        try:
            backend = reference if name == "torch" else make_backend(name, model, 1, device=device,
                                                                     warn=lambda msg: None)
        except Exception as e:  # noqa: BLE001 (any failure to build means: not this one)
            row["skipped"] = f"could not start: {e}"
            continue
        if backend.name != name:
            row["skipped"] = f"fell back to {backend.name}"
            continue
        if name != "torch":
            levels = parity_levels(backend, reference, model, steps)
            row["parity_levels"] = levels
            if levels > PARITY_MAX_LEVELS:
                row["skipped"] = f"frames differ from eager torch by {levels} levels (> {PARITY_MAX_LEVELS})"
                continue
        t, w = _time_frames(backend, model, steps, frames, warmup, seed)
        waited = max(waited, w)
        row.update(p50_ms=round(float(np.median(t)) * 1e3, 2), p99_ms=round(float(np.percentile(t, 99)) * 1e3, 2))
        if best is None or row["p50_ms"] < best["p50_ms"]:
            best = row
    if best is None:
        raise RuntimeError(f"no backend could run here: {results}")
    torch.set_num_threads(best["threads"])
    state = model.init_state(1, seed=seed)
    gflop = count_flops(lambda: reference.step(state, torch.zeros(1, dtype=torch.long), steps))["total"] / 1e9
    peak = gemm_gflops(reps=5)
    cal = Calibration(backend=best["backend"], threads=best["threads"],
                      fps=pick_fps(best["p99_ms"] / 1e3, fps_choices), frame_ms_p50=best["p50_ms"],
                      frame_ms_p99=best["p99_ms"], steps=steps, candidates=results, machine=machine,
                      frame_gflop=round(gflop, 3), machine_gemm_gflops=round(peak, 1),
                      matmul_share=round(gflop / max(best["p50_ms"] / 1e3, 1e-6) / peak, 3),
                      waited_share=round(waited, 3), seconds=round(time.perf_counter() - t_start, 2))
    if cal.busy:
        return cal
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in asdict(cal).items() if k not in ("cached", "seconds")}
        path.write_text(json.dumps({"version": VERSION, **data}, indent=1))
    except OSError as e:
        say(f"warning: calibration not cached ({path}: {e})")
    return cal


@dataclass
class Choice:
    """The backend, threads and budget a front end runs with, and the calibration behind them
    (None when the flags gave all three)."""

    backend: str
    threads: int
    fps: float
    calibration: Calibration | None = None

    def line(self) -> str:
        if self.calibration is None:
            return f"{self.backend}, {self.threads} thread(s), {self.fps:g} fps budget (as given)"
        return self.calibration.line()


def choose(model: WorldModel, checkpoint_hash: str, backend: str = "auto", threads: int | None = None,
           fps: float | None = None, device: str = "cpu", cache_dir: str | Path | None = None,
           say: Callable[[str], object] = print) -> Choice:
    """Fill in what the flags left open ("auto" backend, None threads or fps) by calibrating
    over the candidates the given flags allow; sets torch's thread count to the choice."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0 (or None: chosen by calibration), got {fps}")
    if backend != "auto" and threads is not None and fps is not None:
        torch.set_num_threads(threads)
        return Choice(backend, threads, fps)
    if device != "cpu" and backend == "auto":
        backend = "torch"  # the CPU candidates say nothing about a GPU: calibrate its budget only
    backends = ["onnxruntime", "torch"] if backend == "auto" else [backend]
    thread_counts = [threads] if threads is not None else sorted({1, min(2, machine_id()["cores"] or 1)})
    candidates = [(b, t) for b in backends for t in thread_counts]
    cal = calibrate(model, checkpoint_hash, candidates, device=device, cache_dir=cache_dir, say=say)
    return Choice(cal.backend, cal.threads, fps if fps is not None else cal.fps, cal)
