"""Session: determinism, batching, save/load/rewind, budget, recorder, worker, bad input."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from runtime.budget import BudgetConfig
from runtime.recorder import SessionRecorder, replay
from runtime.session import FrameError, Session
from runtime.snapshot import SnapshotError, save_snapshot
from runtime.worker import SessionWorker
from world.model import build_model
from world.state import NEVER

ACTIONS = [4, 4, 1, 1, 3, 0, 2, 5, 4, 4, 4, 1, 0, 0, 3, 3, 2, 2, 1, 4]


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    # room for the budget to move; no snap onto a random codebook (it would absorb a prompt's effect, conftest.ckpt)
    return build_model("tiny", sampler={"max_steps": 4, "snap": False}).randomize_(0).eval()


def make(model, **kw) -> Session:
    return Session(model, text_encoder="hash", **kw)


def assert_same_up_to_rounding(a: np.ndarray, b: np.ndarray) -> None:
    """Batched and single matmuls round differently: allow rare 1-2 level differences."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert diff.max() <= 2 and (diff == 0).mean() > 0.999, (diff.max(), (diff == 0).mean())


def run(session: Session, actions=ACTIONS) -> np.ndarray:
    return np.stack([session.step(a) for a in actions])


def test_same_inputs_same_frames(model):
    a, b = make(model), make(model)
    fa = [a.reset(seed=3, prompt="a snowy forest")] + list(run(a))
    fb = [b.reset(seed=3, prompt="a snowy forest")] + list(run(b))
    assert fa[0].shape == (64, 64, 3) and fa[0].dtype == np.uint8
    np.testing.assert_array_equal(np.stack(fa), np.stack(fb))
    c = make(model)
    c.reset(seed=4, prompt="a snowy forest")
    assert not np.array_equal(run(c), np.stack(fa[1:])), "another seed must give another world"


def test_batch_equals_single(model):
    batched = make(model, batch=2)
    first = batched.reset(seed=[5, 9], prompt=["a desert at noon", "a swamp in the rain"])
    assert first.shape == (2, 64, 64, 3)
    frames = np.stack([batched.step(np.array([a, (a + 1) % 6])) for a in ACTIONS])
    for w, (seed, prompt) in enumerate([(5, "a desert at noon"), (9, "a swamp in the rain")]):
        single = make(model)
        assert_same_up_to_rounding(single.reset(seed=seed, prompt=prompt), first[w])
        assert_same_up_to_rounding(run(single, [(a + w) % 6 for a in ACTIONS]), frames[:, w])


@pytest.mark.parametrize("policy", ["evolving", "compress"])
def test_reset_worlds_leaves_the_others_alone(model, policy):
    if policy != model.cfg.memory.policy:  # compress memory keeps [L, B, ...] K/V: batch on axis 1
        model = build_model("tiny", sampler={"max_steps": 4}, memory={"policy": policy}).randomize_(0).eval()
    batched = make(model, batch=2)
    batched.reset(seed=[1, 2], prompt="grass")
    for a in ACTIONS[:10]:
        batched.step(np.array([a, a]))
    new_first = batched.reset_worlds([1], seeds=[7], prompts=["snow"])
    rest = np.stack([batched.step(np.array([a, a])) for a in ACTIONS[10:]])
    fresh = make(model)
    assert_same_up_to_rounding(fresh.reset(seed=7, prompt="snow"), new_first[0])
    assert_same_up_to_rounding(run(fresh, ACTIONS[10:]), rest[:, 1])
    untouched = make(model)
    untouched.reset(seed=1, prompt="grass")
    assert_same_up_to_rounding(run(untouched)[10:], rest[:, 0])


def test_prompt_switch_of_one_world_leaves_the_others_alone(model):
    batched, plain = make(model, batch=2), make(model, batch=2)
    for s in (batched, plain):
        s.reset(seed=[1, 2], prompt="grass")
        for a in ACTIONS[:10]:
            s.step(np.array([a, a]))
    batched.set_prompt("snow", world=1)  # re-caches world 1's window only
    assert batched._switch_s > 0
    switched = np.stack([batched.step(np.array([a, a])) for a in ACTIONS[10:]])
    kept = np.stack([plain.step(np.array([a, a])) for a in ACTIONS[10:]])
    np.testing.assert_array_equal(switched[:, 0], kept[:, 0])
    assert not np.array_equal(switched[:, 1], kept[:, 1])
    assert batched._switch_s == 0  # charged to the frame after the switch


def test_start_frame_is_the_first_frame(model):
    s = make(model)
    start = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(s.reset(seed=0, start_frame=start), start)
    assert s.frame_index == 1


def test_save_load_continues_identically(model, tmp_path):
    s = make(model)
    s.reset(seed=11, prompt="volcanic plain")
    run(s, ACTIONS[:12])
    path = s.save(tmp_path / "world.safetensors")
    assert path.stat().st_size < 5e6
    after = run(s)
    s2 = make(model)
    s2.reset(seed=0)
    t0 = time.perf_counter()
    shown = s2.load(path)
    first = s2.step(ACTIONS[0])
    assert time.perf_counter() - t0 < 0.5, "load + first frame must take < 0.5 s"
    assert shown.shape == (64, 64, 3) and s2.prompts == ["volcanic plain"]
    np.testing.assert_array_equal(np.stack([first] + list(run(s2, ACTIONS[1:]))), after)


def _with_format_version(data: bytes, version: int) -> bytes:
    """Snapshot bytes with the header's format_version replaced (the tensors untouched)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    inner = json.loads(header["__metadata__"]["echo_infinity"])
    inner["format_version"] = version
    header["__metadata__"]["echo_infinity"] = json.dumps(inner)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data[8 + n :]


def _bad_files(tmp_path, good):
    data = good.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    edited = bytearray(data)
    edited[-100] ^= 0xFF
    (tmp_path / "edited.safetensors").write_bytes(bytes(edited))
    (tmp_path / "newer.safetensors").write_bytes(_with_format_version(data, 99))
    (tmp_path / "garbage.safetensors").write_bytes(b"not a snapshot at all")
    return {"truncated": "truncated", "edited": "modified", "newer": "newer", "garbage": "not an Echo-Infinity"}


def test_every_bad_snapshot_is_rejected_and_changes_nothing(model, tmp_path):
    s = make(model)
    s.reset(seed=2, prompt="forest")
    run(s, ACTIONS[:5])
    good = s.save(tmp_path / "good.safetensors")
    other = Session(build_model("tiny").randomize_(1), text_encoder="hash")
    other.reset(seed=2)
    foreign = other.save(tmp_path / "foreign.safetensors")
    cases = _bad_files(tmp_path, good)
    reference = make(model)
    reference.load(good)
    expected = run(reference, ACTIONS[:6])
    for name, needle in cases.items():
        with pytest.raises(SnapshotError, match=needle):
            s.load(tmp_path / f"{name}.safetensors")
    with pytest.raises(SnapshotError, match="belongs to checkpoint"):
        s.load(foreign)
    with pytest.raises(SnapshotError, match="no snapshot"):
        s.load(tmp_path / "missing.safetensors")
    np.testing.assert_array_equal(run(s, ACTIONS[:6]), expected)  # the world went on untouched


def test_older_format_snapshot_is_refused_clearly(model, tmp_path):
    """A format-1 snapshot (no previous frame in the state) is refused by its version, not a KeyError."""
    s = make(model)
    s.reset(seed=2, prompt="forest")
    run(s, ACTIONS[:5])
    assert {"prev.latent", "prev.level"} <= set(s.snapshot())
    old = {k: v for k, v in s.snapshot().items() if not k.startswith("prev.")}  # what format 1 held
    path = save_snapshot(tmp_path / "old.safetensors", old, s.checkpoint_hash, s.frame_index, "forest")
    path.write_bytes(_with_format_version(path.read_bytes(), 1))
    before = s.snapshot()
    with pytest.raises(SnapshotError, match=r"older echo-infinity \(snapshot format 1.*must be re-saved"):
        s.load(path)
    assert all(torch.equal(v, s.snapshot()[k]) for k, v in before.items())  # nothing changed


@pytest.mark.parametrize("version", [4, 5])
def test_older_format_snapshots_load_with_what_they_lacked(model, tmp_path, version):
    """Format 5 added "prompt.frame" (a format-4 world's prompt never changed), format 6 the tile map
    (empty in an older world): such files still load and continue the same."""
    s = make(model)
    s.reset(seed=3, prompt="forest")
    run(s, ACTIONS[:5])
    lacked = ("tile_map.", "prompt.frame") if version == 4 else ("tile_map.",)
    old = {k: v for k, v in s.snapshot().items() if not k.startswith(lacked)}
    path = save_snapshot(tmp_path / "old.safetensors", old, s.checkpoint_hash, s.frame_index, "forest")
    path.write_bytes(_with_format_version(path.read_bytes(), version))
    expected = run(s, ACTIONS[:6])
    s2 = make(model)
    s2.reset(seed=0)
    s2.load(path)
    loaded = s2.snapshot()
    assert int(loaded["prompt.frame"][0]) == NEVER and (loaded["tile_map.codes"] == -1).all()
    np.testing.assert_array_equal(run(s2, ACTIONS[:6]), expected)


def test_rewind_goes_back_and_replays(model):
    s = make(model, rewind_seconds=5, rewind_every=5)
    s.reset(seed=8, prompt="snow")
    frames = run(s, ACTIONS + ACTIONS)  # frame index 41
    s.rewind(seconds=0.5)  # 10 frames at the default 20 fps
    assert s.frame_index in (30, 35)
    back = s.frame_index
    again = run(s, (ACTIONS + ACTIONS)[back - 1 : back + 4])
    np.testing.assert_array_equal(again, frames[back - 1 : back + 4])


def test_budget_lowers_steps_when_slow_and_raises_them_back(model):
    cfg = BudgetConfig(fps=20, min_steps=1, max_steps=4, start_steps=3, patience=5)
    s = make(model, budget=cfg)
    s.reset(seed=0)
    out = s.backend(s.state, torch.zeros(1, dtype=torch.long), 1)
    slow = {"on": True}

    def backend(state, action, steps):  # a fake model: 30 ms a step while slow (budget 50 ms)
        time.sleep((0.030 if slow["on"] else 0.001) * steps)
        return out

    s.backend = backend
    used = [s.advance(0).steps for _ in range(15)]
    assert used[0] == 3 and min(used) == 1, used
    slow["on"] = False
    used = [s.advance(0).steps for _ in range(60)]
    assert used[-1] > 1, used
    assert s.stats()["step_changes"] >= 3


def test_paced_session_counts_misses(model):
    s = make(model, budget=BudgetConfig(fps=1000), pace=True)  # 1 ms: every frame is late
    s.reset(seed=0)
    run(s, ACTIONS[:10])
    st = s.stats()
    assert st["budget_misses"] >= 8 and st["budget_miss_rate"] > 0.8


def test_recorder_writes_a_readable_mp4_and_replays(model, tmp_path):
    import cv2

    s = make(model)
    rec = SessionRecorder(s, tmp_path / "run.mp4", seed=4, prompt="desert", fps=20)
    shown = [s.frames[0]]
    for i, a in enumerate(ACTIONS):
        if i == 7:
            rec.set_prompt("swamp at night")
        shown.append(rec.step(a))
    log = rec.close()
    cap = cv2.VideoCapture(str(tmp_path / "run.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(ACTIONS) + 1
    ok, _ = cap.read()
    assert ok
    replayed = replay(log, make(model))
    np.testing.assert_array_equal(replayed, np.stack(shown))


def test_worker_thread_gives_the_same_frames(model):
    direct = make(model)
    direct.reset(seed=6)
    expected = run(direct, ACTIONS[:8])
    s = make(model)
    worker = SessionWorker(s, queue_size=2)
    try:
        worker.call(s.reset, 6)
        got = []
        for a in ACTIONS[:8]:
            while not worker.submit(a):
                time.sleep(0.001)
            out = None
            while out is None:
                out = worker.poll()
            got.append(out.frames[0])
        np.testing.assert_array_equal(np.stack(got), expected)
        worker.submit(99)  # a bad action fails in the worker and is re-raised here
        with pytest.raises(ValueError, match="action must be in"):
            while worker.poll() is None:
                time.sleep(0.001)
        assert worker.call(lambda: s.frame_index) == 9  # the worker survived
    finally:
        worker.close()


def test_non_finite_frame_raises_and_goes_back(model):
    s = make(model, rewind_every=5)
    s.reset(seed=0)
    run(s, ACTIONS[:7])  # frame 8; rewind snapshots at 1 and 5
    real = s.backend

    def broken(state, action, steps):
        out = real(state, action, steps)
        return out._replace(reward=torch.full_like(out.reward, float("nan")))

    s.backend = broken
    with pytest.raises(FrameError, match="went back to frame 5"):
        s.step(0)
    s.backend = real
    assert s.frame_index == 5 and s.faults == 1
    assert s.step(0).shape == (64, 64, 3)


@pytest.mark.parametrize("action, error", [
    (6, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("up", TypeError),
    (np.array([1, 2]), ValueError),
])
def test_bad_actions_get_clear_errors(model, action, error):
    s = make(model)
    s.reset(seed=0)
    with pytest.raises(error, match="action"):
        s.step(action)


def test_other_bad_input(model, tmp_path):
    s = make(model)
    with pytest.raises(RuntimeError, match="reset"):
        s.step(0)
    with pytest.raises(ValueError, match="start_frame"):
        s.reset(seed=0, start_frame=np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="start_frame"):
        s.reset(seed=0, start_frame=np.zeros((64, 64, 3), np.float32))
    s.reset(seed=0)
    with pytest.raises(TypeError, match="prompt"):
        s.set_prompt(None)
    s.set_prompt("")  # unconditional is allowed
    with pytest.warns(UserWarning, match="truncated"):
        s.set_prompt("word " * 500)  # very long: the encoder truncates with a warning
    assert s.step(0).shape == (64, 64, 3)
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        Session(tmp_path, text_encoder="hash")
    with pytest.raises(ValueError, match="batch"):
        Session(model, batch=0, text_encoder="hash")
    b = make(model, batch=2)
    with pytest.raises(ValueError, match="seed needs 2"):
        b.reset(seed=[1, 2, 3])
    b.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        b.step(np.array([1, 2, 3]))
    with pytest.raises(RuntimeError, match="batched"):
        b.rewind(1.0)


def test_session_bench_reports_the_documented_names():
    from runtime.bench import run_session_bench

    r = run_session_bench(frames=16, fps=20, random_init=True, text_encoder="hash", switch_every=5, progress=False)
    for key in ("fps", "latency_ms", "latency_ratio_last_first", "rss_mb", "budget_fps", "budget_miss_rate",
                "over_budget_rate", "steps_used", "non_finite", "switch"):
        assert key in r, key
    assert r["fps"] > 0 and r["non_finite"] == 0 and sum(r["steps_used"].values()) == 16
    assert r["budget_miss_rate"] is None  # not paced
    sw = r["switch"]
    assert sw["count"] == 3 and sw["recache_ms"]["p50"] > 0 and sw["frame_ms_p50"] > 0  # frames 5, 10, 15
    assert sw["guided_frames"] == 8 and sw["guided_frame_ms_p50"] > 0  # tiny guides 8 frames after a switch
    assert np.isfinite(sw["extra_ms_per_switch"]) and sw["over_budget_ms_per_switch"] >= 0


def test_a_non_finite_world_in_a_batch_restarts_and_the_others_go_on(model):
    b = make(model, batch=2)
    b.reset(seed=[1, 2])
    reference = make(model)
    reference.reset(seed=1)
    real = b.backend

    def broken(state, action, steps):  # world 1 goes bad
        out = real(state, action, steps)
        return out._replace(reward=torch.tensor([0.0, float("nan")]))

    b.backend = broken
    with pytest.warns(RuntimeWarning, match=r"worlds \[1\] came out non-finite"):
        out = b.advance(np.array([4, 4]))
    b.backend = real
    assert out.done[1] == 1.0 and out.reward[1] == 0.0 and b.faults == 1
    assert b.state.frame[1] == 1 and b.state.frame[0] == 2  # world 1 is fresh, world 0 went on
    assert_same_up_to_rounding(out.frames[0], reference.step(4))


def test_budget_never_spends_more_steps_than_the_model_allows():
    from runtime.budget import BudgetConfig
    from world.model import build_model

    model = build_model("tiny", sampler={"max_steps": 2}).randomize_(0)
    s = Session(model, budget=BudgetConfig(fps=1.0), text_encoder="hash")  # a generous budget would climb to 4
    s.reset(seed=0)
    for _ in range(30):
        s.step(0)
    assert s.budget.config.max_steps == 2 and s.stats()["steps"] == 2
