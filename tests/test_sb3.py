"""World-v0's SAME_STEP autoreset, and Stable-Baselines3 through `envs.sb3` (the `rl` extra)."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import envs
from tests.test_world_env import make_vec

pytest.importorskip("stable_baselines3")


def test_same_step_autoreset_restarts_in_the_ending_step(ckpt, monkeypatch):
    vec = make_vec(ckpt, 2, max_episode_steps=3, autoreset_mode="SameStep")
    assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    vec.reset(seed=0, options={"prompt": ["snow", "sand"]})
    session = vec.unwrapped.session
    advance, seen = session.advance, {}

    def spy(a):
        out = advance(a)
        seen["frames"] = out.frames.copy()
        return out._replace(done=np.array(next(done), np.float32))

    done = iter([[0.9, 0.1], [0.1, 0.1], [0.1, 0.1]])  # env 0 ends at the first step
    monkeypatch.setattr(session, "advance", spy)
    a = np.array([1, 2])
    obs, _, term, trunc, info = vec.step(a)
    assert term.tolist() == [True, False] and not trunc.any()
    assert info["_final_obs"].tolist() == [True, False]
    np.testing.assert_array_equal(info["final_obs"][0], seen["frames"][0])  # the last frame it drew
    assert not np.array_equal(obs[0], seen["frames"][0])  # already the next episode's first frame
    assert info["frame"].tolist() == [1, 2] and info["final_info"]["frame"][0] == 2
    vec.step(a)
    _, _, term, trunc, info = vec.step(a)  # env 1 reaches max_episode_steps = 3 and restarts at once
    assert trunc.tolist() == [False, True] and info["frame"].tolist() == [3, 1]
    with pytest.raises(ValueError, match="autoreset_mode"):
        make_vec(ckpt, 1, autoreset_mode="Disabled")


def test_sb3_vec_env_hands_over_the_last_obs_and_the_time_limit(ckpt):
    from envs.sb3 import SB3VecEnv, make_sb3_vec_env

    venv = make_sb3_vec_env(envs.WORLD_ID, 2, checkpoint=ckpt, text_encoder="hash", max_episode_steps=2,
                            done_threshold=1.0)
    venv.seed(5)
    obs = venv.reset()
    assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
    _, _, dones, infos = venv.step(np.array([4, 1]))
    assert not dones.any() and "terminal_observation" not in infos[0]
    _, rewards, dones, infos = venv.step(np.array([4, 1]))
    assert dones.all() and rewards.dtype == np.float32
    assert all(i["TimeLimit.truncated"] and i["terminal_observation"].shape == (64, 64, 3) for i in infos)
    assert venv.get_attr("render_mode") == [None, None]
    venv.close()
    with pytest.raises(ValueError, match="SAME_STEP"):
        SB3VecEnv(make_vec(ckpt, 1))
    with pytest.raises(ValueError, match="n_envs"):
        make_sb3_vec_env(envs.WORLD_ID, 0)


def test_sb3_ppo_demo_trains_in_both_and_plays_the_teacher(ckpt, tmp_path):
    from safetensors.torch import load_file

    from demos import sb3_ppo

    out = tmp_path / "sb3" / "results.json"
    sb3_ppo.main(["--checkpoint", str(ckpt), "--text-encoder", "hash", "--total-steps", "256", "--num-envs", "2",
                  "--world-max-steps", "16", "--eval-episodes", "1", "--eval-max-steps", "20", "--out", str(out),
                  "--no-progress"])
    saved = json.loads(out.read_text())
    assert saved["library"] == "stable-baselines3"
    assert saved["results"].keys() == {"random", envs.WORLD_ID, envs.TEACHER_ID}
    assert saved["results"][envs.WORLD_ID]["train"]["env_steps"] == 256
    weights = load_file(str(out.parent / "sb3_policy_World-v0.safetensors"))
    assert "action_net.weight" in weights
