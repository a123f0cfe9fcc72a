"""Frame budget, pacing, snapshot files and the rewind ring (model-independent parts of runtime/)."""
import json

import pytest
import torch

from runtime.budget import BudgetConfig, FrameBudget, Pacer
from runtime.rewind import RewindBuffer
from runtime.snapshot import FORMAT_VERSION, SnapshotError, load_snapshot, save_snapshot


def simulate(budget, fixed_s, per_step_s, frames):
    """Feed latencies of a backend whose frame costs fixed + steps * per_step."""
    history = []
    for _ in range(frames):
        budget.record(fixed_s + budget.steps * per_step_s)
        history.append(budget.steps)
    return history


def test_budget_lowers_steps_under_a_slow_backend_and_raises_them_back():
    b = FrameBudget(BudgetConfig(fps=20, min_steps=1, max_steps=4, start_steps=4))
    # Slow: 4 steps take 4 * 15 ms + 5 ms = 65 ms > 50 ms budget.
    slow = simulate(b, 0.005, 0.015, 100)
    assert slow[-1] == 2  # 35 ms fits under 0.9 * 50 ms; 3 steps (50 ms) does not
    # The backend gets fast again: steps climb back to the maximum.
    fast = simulate(b, 0.002, 0.004, 200)
    assert fast[-1] == 4
    assert b.stats()["step_changes"] >= 4


def test_budget_has_hysteresis():
    b = FrameBudget(BudgetConfig(fps=20, start_steps=2, patience=20))
    # 2 steps = 30 ms; 3 steps predicted 45 ms: above low*budget (35 ms), so no flapping up.
    history = simulate(b, 0.0, 0.015, 300)
    assert set(history) == {2}
    assert b.changes == 0


def test_budget_waits_patience_frames_before_raising():
    b = FrameBudget(BudgetConfig(fps=20, min_steps=1, start_steps=1, patience=20))
    history = simulate(b, 0.0, 0.005, 25)
    assert history[:19] == [1] * 19 and history[19] == 2


def test_budget_default_never_drops_to_one_step():
    b = FrameBudget(BudgetConfig(fps=20))  # far too slow: 100 ms a step
    assert set(simulate(b, 0.0, 0.1, 50)) == {2} and b.config.min_steps == 2


@pytest.mark.parametrize("kwargs", [dict(fps=0), dict(min_steps=3, start_steps=2), dict(low=0.9, high=0.8)])
def test_budget_config_is_validated(kwargs):
    with pytest.raises(ValueError):
        BudgetConfig(**kwargs)


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        assert s >= 0
        self.t += s


def test_pacer_holds_the_clock_and_counts_misses():
    clock = FakeClock()
    pacer = Pacer(fps=10, clock=clock, sleep=clock.sleep)
    releases = []
    for work in [0.01, 0.05, 0.02, 0.25, 0.01, 0.01]:  # one frame takes 250 ms: a miss
        clock.t += work
        pacer.wait()
        releases.append(round(clock.t, 3))
    assert pacer.misses == 1
    assert releases[:3] == [0.01, 0.11, 0.21]  # one frame per 100 ms
    assert releases[4] == pytest.approx(releases[3] + 0.1)  # resynced, no burst
    assert pacer.miss_rate == pytest.approx(1 / 5)


def state(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"cache_k": torch.randn(2, 4, 8, generator=g), "frame_index": torch.tensor([seed]),
            "memory": torch.randn(3, 5, generator=g).half()}


EXPECTED = {k: (tuple(v.shape), v.dtype) for k, v in state().items()}


def test_snapshot_round_trip(tmp_path):
    s = state(3)
    path = save_snapshot(tmp_path / "w.snap", s, "abc123", frame_index=77, prompt="snowy forest")
    tensors, header = load_snapshot(path, "abc123", EXPECTED)
    assert all(torch.equal(tensors[k], s[k]) for k in s)
    assert header["frame_index"] == 77 and header["prompt"] == "snowy forest"
    assert header["format_version"] == FORMAT_VERSION


def _rewrite_header(path, **changes):
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    head = json.loads(data[8 : 8 + n])
    inner = json.loads(head["__metadata__"]["echo_infinity"])
    inner.update(changes)
    head["__metadata__"]["echo_infinity"] = json.dumps(inner)
    raw = json.dumps(head).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n :])


def test_bad_snapshots_are_rejected_clearly(tmp_path):
    good = save_snapshot(tmp_path / "good.snap", state(), "abc123", 1, "p")
    cases = {}
    cases["other checkpoint"] = (good, "zzz999", "belongs to checkpoint abc123")
    trunc = tmp_path / "trunc.snap"
    trunc.write_bytes(good.read_bytes()[:-40])
    cases["truncated"] = (trunc, "abc123", "truncated or damaged")
    edited = tmp_path / "edited.snap"
    data = bytearray(good.read_bytes())
    data[-3] ^= 0xFF
    edited.write_bytes(bytes(data))
    cases["edited"] = (edited, "abc123", "modified after it was written")
    newer = tmp_path / "newer.snap"
    newer.write_bytes(good.read_bytes())
    _rewrite_header(newer, format_version=FORMAT_VERSION + 1)
    cases["newer"] = (newer, "abc123", "newer echo-infinity")
    junk = tmp_path / "junk.snap"
    junk.write_bytes(b"not a snapshot at all")
    cases["junk"] = (junk, "abc123", "not an Echo-Infinity snapshot")
    cases["missing"] = (tmp_path / "nope.snap", "abc123", "no snapshot at")
    for name, (path, ckpt, match) in cases.items():
        with pytest.raises(SnapshotError, match=match):
            load_snapshot(path, ckpt, EXPECTED)
    other_shape = save_snapshot(tmp_path / "shape.snap", {**state(), "memory": torch.zeros(4, 5).half()}, "abc123", 1, "p")
    with pytest.raises(SnapshotError, match="expects"):
        load_snapshot(other_shape, "abc123", EXPECTED)


def test_rewind_ring_is_constant_size_and_goes_back():
    ring = RewindBuffer(seconds=2, fps=10, every=5)  # 4 slots
    assert ring.capacity == 4
    for f in range(0, 100):
        ring.maybe_push(f, lambda: {"x": torch.tensor([float(f)])})
    assert len(ring) == 4 and len(ring._slots) == 4
    frame, s = ring.rewind(1)
    assert frame == 95 and s["x"].item() == 95.0
    frame, s = ring.rewind(3)
    assert frame == 85 and len(ring) == 2
    s["x"] += 1  # the returned state is a copy
    assert ring.rewind(1)[1]["x"].item() == 85.0
    ring.clear()
    with pytest.raises(IndexError):
        ring.rewind()


def test_cli_parser_builds_without_torch():
    """`echo-infinity --help` must stay quick: building every subcommand's flags imports no torch."""
    import subprocess
    import sys

    code = "import sys, demos.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
