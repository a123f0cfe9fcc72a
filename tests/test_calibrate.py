"""The calibration that fits backend, threads and frame budget to the machine (runtime/calibrate.py)."""

import json
import time

import pytest
import torch

import runtime.calibrate as cal
from engines.backend import TorchBackend
from world.model import StepResult, build_model


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return build_model("tiny").randomize_(0).eval()


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch):
    """Whatever else runs on the test machine, the calibrations here see idle cores (the busy
    test below sets its own waits)."""
    monkeypatch.setattr(cal, "_runqueue_wait", lambda: None)


class Slowed(TorchBackend):
    """The eager backend, `delay` seconds slower a frame (a slower machine)."""

    def __init__(self, model, batch, device="cpu", delay=0.0, shift=0):
        super().__init__(model, batch, device)
        self.delay, self.shift, self.name = delay, shift, "torch"

    def step(self, state, action, steps):
        out = super().step(state, action, steps)
        time.sleep(self.delay)
        if self.shift:
            out.frame.add_(self.shift)  # uint8 wraps: frames that do not match the reference
        return out


class Instant:
    """A backend that costs nothing: every frame black."""

    name = "torch"

    def step(self, state, action, steps):
        return StepResult(torch.zeros(1, 64, 64, 3, dtype=torch.uint8), torch.zeros(1), torch.zeros(1))


def use(monkeypatch, **kw):
    monkeypatch.setattr(cal, "make_backend", lambda name, model, batch, device="cpu", **_: Slowed(model, batch, device, **kw))


def test_pick_fps_takes_the_highest_budget_the_p99_holds():
    assert cal.pick_fps(0.010) == 30.0
    assert cal.pick_fps(0.030) == 20.0  # 30 ms x 1.25 > 33 ms
    assert cal.pick_fps(0.045) == 15.0
    assert cal.pick_fps(0.3) == 10.0  # nothing holds: the lowest, and the budget counts the misses


def test_a_slower_machine_gets_a_lower_budget_and_says_so(model, monkeypatch, tmp_path):
    said = []
    use(monkeypatch, delay=0.06)
    slow = cal.calibrate(model, "h", [("torch", 1)], frames=6, warmup=1, cache_dir=tmp_path / "a", say=said.append)
    assert slow.fps == 10.0 and slow.frame_ms_p50 >= 60 and not slow.cached
    assert said and "calibrating" in said[0]
    assert "-> 10 fps budget" in slow.line() and "torch, 1 thread" in slow.line()
    monkeypatch.setattr(cal, "make_backend", lambda *a, **k: Instant())  # a machine far faster than needed
    fast = cal.calibrate(model, "h", [("torch", 1)], frames=6, warmup=1, cache_dir=tmp_path / "b", say=said.append)
    assert fast.fps == 30.0


def test_the_result_is_cached_per_machine_and_checkpoint(model, monkeypatch, tmp_path):
    use(monkeypatch, delay=0.0)
    first = cal.calibrate(model, "h1", [("torch", 1)], frames=5, warmup=1, cache_dir=tmp_path, say=lambda m: None)
    use(monkeypatch, delay=10.0)  # would take a minute if it measured again
    t0 = time.perf_counter()
    again = cal.calibrate(model, "h1", [("torch", 1)], frames=5, warmup=1, cache_dir=tmp_path, say=lambda m: None)
    assert time.perf_counter() - t0 < 1.0 and again.cached and again.fps == first.fps
    assert "cached calibration" in again.line()
    files = list((tmp_path / "calibration").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["machine"]["cpu"]
    files[0].write_text("{damaged")  # measured again, not an error
    use(monkeypatch, delay=0.0)
    assert not cal.calibrate(model, "h1", [("torch", 1)], frames=5, warmup=1, cache_dir=tmp_path,
                             say=lambda m: None).cached
    other = cal.calibration_key(cal.machine_id(), "h2", [("torch", 1)], "cpu", cal.FPS_CHOICES)
    assert other != files[0].stem  # another checkpoint calibrates on its own


def test_a_backend_that_does_not_match_eager_torch_is_not_chosen(model, monkeypatch, tmp_path):
    monkeypatch.setattr(cal, "available_backends", lambda device: {"torch": None, "onnxruntime": None})
    real = cal.make_backend

    def make(name, model, batch, device="cpu", **kw):
        if name == "onnxruntime":
            b = Slowed(model, batch, device, shift=40)
            b.name = "onnxruntime"
            return b
        return real(name, model, batch, device=device)

    monkeypatch.setattr(cal, "make_backend", make)
    c = cal.calibrate(model, "h", [("onnxruntime", 1), ("torch", 1)], frames=5, warmup=1, cache_dir=tmp_path,
                      say=lambda m: None)
    assert c.backend == "torch"
    ort = next(r for r in c.candidates if r["backend"] == "onnxruntime")
    assert ort["parity_levels"] > cal.PARITY_MAX_LEVELS and "differ from eager torch" in ort["skipped"]


def test_choose_keeps_what_the_flags_give(model, monkeypatch, tmp_path):
    monkeypatch.setattr(cal, "calibrate", lambda *a, **k: pytest.fail("calibrated though every flag was given"))
    c = cal.choose(model, "h", "onnxruntime", 1, 15.0, cache_dir=tmp_path)
    assert (c.backend, c.threads, c.fps, c.calibration) == ("onnxruntime", 1, 15.0, None)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        cal.choose(model, "h", "torch", 0, 20.0)
    with pytest.raises(ValueError, match="fps must be > 0"):
        cal.choose(model, "h", "torch", 1, -1.0)


def test_choose_calibrates_only_the_open_choices(model, monkeypatch, tmp_path):
    seen = {}

    def fake(model, checkpoint_hash, candidates, **kw):
        seen["candidates"] = candidates
        return cal.Calibration("torch", candidates[0][1], 15.0, 40.0, 50.0, 2, candidates=[])

    monkeypatch.setattr(cal, "calibrate", fake)
    c = cal.choose(model, "h", "torch", 1, None, cache_dir=tmp_path)
    assert seen["candidates"] == [("torch", 1)] and c.fps == 15.0
    c = cal.choose(model, "h", "torch", 1, 30.0, cache_dir=tmp_path)  # --fps given: kept
    assert c.fps == 30.0
    cal.choose(model, "h", "auto", 1, 20.0, cache_dir=tmp_path)
    assert seen["candidates"] == [("onnxruntime", 1), ("torch", 1)]


def test_a_window_calibrates_and_shows_it_in_the_hud(tmp_path, monkeypatch):
    """ModelSource with auto settings (what `play` in a window uses): calibrated, cached, in the HUD."""
    from demos.source import ModelSource

    monkeypatch.setenv("ECHO_INFINITY_CACHE", str(tmp_path / "cache"))
    ck = build_model("tiny").randomize_(0).save(tmp_path / "ck")
    lines = []
    src = ModelSource(ck, fps=None, backend="torch", threads=None, text_encoder="hash", say=lines.append)
    assert src.choice.calibration is not None and src.fps in cal.FPS_CHOICES
    assert src.session.fps == src.fps and any("fps budget" in line for line in lines)
    src.reset(1)
    info = src.step(0)[3]
    assert any(name == "calibrated" for name, _ in src.hud_fields(info))
    again = ModelSource(ck, fps=None, backend="torch", threads=None, text_encoder="hash", say=lines.append)
    assert again.choice.calibration.cached


def test_world_v0_takes_backend_auto(tmp_path, monkeypatch):
    """World-v0's backend="auto": a calibrated backend (onnxruntime where it is installed and
    matches eager torch), and the env steps on it."""
    import gymnasium as gym
    import numpy as np

    import envs  # noqa: F401  (registers the envs)

    monkeypatch.setenv("ECHO_INFINITY_CACHE", str(tmp_path / "cache"))
    ck = build_model("tiny").randomize_(0).save(tmp_path / "ck")
    env = gym.make("EchoInfinity/World-v0", checkpoint=str(ck), text_encoder="hash", backend="auto")
    obs, _ = env.reset(seed=1)
    obs, *_ = env.step(4)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    files = list((tmp_path / "cache" / "calibration").glob("*.json"))
    chosen = json.loads(files[0].read_text())["backend"]
    assert len(files) == 1 and chosen in ("onnxruntime", "torch")
    env.close()


def test_a_calibration_on_a_busy_machine_is_used_but_not_cached(model, monkeypatch, tmp_path):
    use(monkeypatch, delay=0.0)
    waits = iter([0.0, 0.5] * 4)  # the timing thread waited for a core 0.5 s of every timing
    monkeypatch.setattr(cal, "_runqueue_wait", lambda: next(waits))
    busy = cal.calibrate(model, "h", [("torch", 1)], frames=5, warmup=1, cache_dir=tmp_path, say=lambda m: None)
    assert busy.busy and "machine was busy" in busy.line() and "not cached" in busy.line()
    assert not list(tmp_path.glob("calibration/*.json"))
    monkeypatch.setattr(cal, "_runqueue_wait", lambda: 1.0)  # a quiet machine: no waiting
    quiet = cal.calibrate(model, "h", [("torch", 1)], frames=5, warmup=1, cache_dir=tmp_path, say=lambda m: None)
    assert not quiet.busy and not quiet.cached and len(list((tmp_path / "calibration").glob("*.json"))) == 1


def test_runqueue_wait_reads_this_thread():
    w = cal._runqueue_wait()
    assert w is None or w >= 0.0
