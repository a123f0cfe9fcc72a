"""Recording: shards round-trip to the teacher's exact frames, any image env records,
the revisit policy really comes back, and bad input gets a clear error."""

import argparse
import hashlib
import json

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the teacher)
from envs.dataset import load_episode
from envs.policies import POLICIES, make_policy, replay_style_events
from envs.record import TEACHER_ID, RecordError, add_arguments, main, record_episodes

STEPS = 60


@pytest.fixture(scope="module")
def teacher_rec(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    stats = record_episodes("teacher", "revisit", episodes=2, steps=STEPS, out_dir=out, seed=3,
                            progress=False, style_switch_prob=0.05)
    return out, stats


def test_round_trip_matches_replaying_the_teacher(teacher_rec):
    out, stats = teacher_rec
    shards = sorted(out.glob("episode_*.npz"))
    assert len(shards) == 2
    switches = 0
    for path in shards:
        ep = load_episode(path)
        assert ep.frames.dtype == np.uint8 and ep.frames.shape[1:] == (64, 64, 3)
        assert ep.frames.shape[0] == ep.length + 1 and 0 < ep.length <= STEPS
        env = gym.make(TEACHER_ID, resolution=64, max_episode_steps=STEPS)
        obs, info = env.reset(seed=ep.meta["env_seed"])
        frames, positions, captions = [obs], [info["position"]], [info["caption"]]
        rewards, terms = [], []
        for t, a in enumerate(ep.actions):
            replay_style_events(env, ep.meta["style_events"], t)
            obs, r, term, trunc, info = env.step(int(a))
            frames.append(obs), positions.append(info["position"]), captions.append(info["caption"])
            rewards.append(r), terms.append(term)
        np.testing.assert_array_equal(ep.frames, np.stack(frames))
        np.testing.assert_array_equal(ep.positions, np.array(positions))
        np.testing.assert_array_equal(ep.rewards, np.array(rewards, np.float32))
        np.testing.assert_array_equal(ep.terminated, np.array(terms))
        assert ep.captions == captions
        assert ep.meta["policy"] == "revisit" and ep.meta["resolution"] == 64
        assert ep.meta["action_meanings"] == ["NOOP", "UP", "DOWN", "LEFT", "RIGHT", "USE"]
        switches += len(ep.meta["style_events"])
    assert switches > 0, "style_switch_prob=0.05 over 120 frames should switch at least once"
    assert stats["frames"] == sum(load_episode(p).length + 1 for p in shards)


def test_manifest_lists_every_shard_with_its_hash(teacher_rec):
    out, _ = teacher_rec
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["env_id"] == TEACHER_ID and manifest["policy"] == "revisit"
    assert [e["file"] for e in manifest["episodes"]] == ["episode_000000.npz", "episode_000001.npz"]
    for item in manifest["episodes"]:
        data = (out / item["file"]).read_bytes()
        assert item["sha256"] == hashlib.sha256(data).hexdigest() and item["bytes"] == len(data)


def test_same_seed_records_identical_shards(tmp_path):
    for d in ("a", "b"):
        record_episodes("teacher", "explore", 1, 30, tmp_path / d, seed=7, progress=False, style_switch_prob=0.1)
    assert (tmp_path / "a/episode_000000.npz").read_bytes() == (tmp_path / "b/episode_000000.npz").read_bytes()


def test_cartpole_records_resized_rgb_frames(tmp_path):
    stats = record_episodes("CartPole-v1", "random", 2, 30, tmp_path, resolution=64, progress=False)
    assert stats["episodes"] == 2 and stats["frames"] > 2
    for path in sorted(tmp_path.glob("episode_*.npz")):
        ep = load_episode(path)
        assert ep.frames.shape == (ep.length + 1, 64, 64, 3) and ep.frames.dtype == np.uint8
        assert ep.frames.std() > 5, "frames should be the rendered cart, not a blank image"
        assert set(np.unique(ep.actions)) <= {0, 1}
        assert not ep.positions.any() and ep.meta["env_id"] == "CartPole-v1"


def _returns(positions: np.ndarray, lo=20, hi=200, away=16) -> int:
    """Frames t back on the exact position of a frame t-k (lo <= k <= hi) after going >= `away` px off."""
    found = 0
    for t in range(lo, len(positions)):
        for k in range(lo, min(hi, t) + 1):
            if (positions[t] == positions[t - k]).all():
                gap = np.abs(positions[t - k + 1:t] - positions[t]).max()
                if gap >= away:
                    found += 1
                    break
    return found


def _rollout(policy: str, seed: int, steps: int = 600):
    env = gym.make(TEACHER_ID, max_episode_steps=steps)
    obs, info = env.reset(seed=seed)
    pol = make_policy(policy, env, np.random.default_rng(seed), slip_prob=0.0)  # no deliberate deaths
    pol.reset(info)
    positions = [info["position"]]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(pol.act(info))
        positions.append(info["position"])
        if term or trunc:
            break
    return pol, np.array(positions)


def test_revisit_policy_returns_to_earlier_positions():
    for seed in (0, 1):
        pol, pos = _rollout("revisit", seed)
        assert len(pos) > 300, "episode ended too early to judge"
        assert pol.revisits, "revisit policy logged no return"
        for leave, back in pol.revisits:
            assert 20 <= back - leave <= 200
            assert (pos[leave] == pos[back]).all()
            assert np.abs(pos[leave:back] - pos[leave]).max() >= 16, "it never left"
        assert _returns(pos) >= 3


def test_explore_policy_moves_on_without_returning_much():
    # Guards the test above from passing trivially (e.g. a policy that stands still).
    _, pos = _rollout("explore", 0)
    assert np.abs(pos - pos[0]).max() > 64


def test_revisit_needs_move_actions():
    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match="revisit policy needs move actions"):
        make_policy("revisit", env, np.random.default_rng(0))
    with pytest.raises(ValueError, match="valid policies: random, explore, revisit"):
        make_policy("wander", env, np.random.default_rng(0))
    assert set(POLICIES) == {"random", "explore", "revisit"}


class _VectorEnv(gym.Env):
    """Discrete actions but no image: vector observations and no render modes."""

    metadata = {"render_modes": []}
    observation_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        return np.zeros(4, np.float32), 0.0, False, False, {}


gym.register("EchoTest/NoImage-v0", entry_point=_VectorEnv)


@pytest.mark.parametrize("env_id,kw,message", [
    ("EchoTest/NoImage-v0", {}, "has no image output"),
    ("Pendulum-v1", {}, "recording needs Discrete actions"),
    ("NoSuchGame-v3", {}, "unknown env 'NoSuchGame-v3'"),
    ("teacher", {"resolution": 100}, "unsupported resolution 100; valid resolutions: 64, 128, 256"),
    ("teacher", {"policy": "wander"}, "unknown policy 'wander'; valid policies"),
    ("CartPole-v1", {"policy": "revisit"}, "revisit policy needs move actions"),
    ("teacher", {"style_switch_prob": 2.0}, r"style-switch-prob must be in \[0, 1\]"),
    ("teacher", {"slip_prob": 0.5}, "slip-prob needs the explore or revisit policy"),
    ("teacher", {"policy": "explore", "slip_prob": -0.1}, "slip-prob needs"),
])
def test_bad_input_is_a_clear_error(tmp_path, env_id, kw, message):
    kw = {"policy": "random", **kw}
    with pytest.raises(RecordError, match=message):
        record_episodes(env_id, kw.pop("policy"), 1, 5, tmp_path, progress=False, **kw)


def test_hazard_slips_end_more_episodes(tmp_path):
    def ended(slip, out):
        return record_episodes("teacher", "explore", 6, 150, out, seed=3, progress=False, motion="tile",
                               slip_prob=slip)["terminated"]

    assert ended(0.5, tmp_path / "slips") > ended(0.0, tmp_path / "none") == 0
    assert json.loads((tmp_path / "slips" / "manifest.json").read_text())["slip_prob"] == 0.5


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    parser = add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--env", "Pendulum-v1", "--out", str(tmp_path), "--episodes", "1",
                              "--steps", "5", "--no-progress"])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Discrete" in err and "Traceback" not in err and err.count("\n") == 1


def test_cli_records_and_writes_stats_json(tmp_path, capsys):
    parser = add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--env", "teacher", "--policy", "random", "--episodes", "1", "--steps", "10",
                              "--out", str(tmp_path / "d"), "--json", str(tmp_path / "s.json"), "--no-progress"])
    assert main(args) == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["frames"] >= 2 and stats["frames_per_s"] > 0 and stats["seconds"] > 0


def test_out_dir_with_a_recording_is_refused_unless_overwrite(tmp_path):
    record_episodes("teacher", "random", 3, 5, tmp_path, progress=False)
    with pytest.raises(RecordError, match="already holds a recording.*--overwrite"):
        record_episodes("teacher", "random", 1, 5, tmp_path, progress=False)
    record_episodes("teacher", "random", 1, 5, tmp_path, progress=False, overwrite=True)
    assert [p.name for p in sorted(tmp_path.glob("episode_*.npz"))] == ["episode_000000.npz"]
