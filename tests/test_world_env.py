"""World-v0: the Gymnasium contract, vector == single, NEXT_STEP autoreset, wrappers, PPO smoke run."""
from __future__ import annotations

import json
import os
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs
from envs import world_env
from envs.world_env import Timing, WorldEnv
from envs.world_vector import WorldVectorEnv
from tests.test_session import assert_same_up_to_rounding
from world.model import build_model

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # check_env opens the human window once

ACTIONS = [4, 4, 1, 1, 3, 0, 2, 5, 4, 1]




def make(ckpt, **kw):
    return gym.make(envs.WORLD_ID, checkpoint=ckpt, text_encoder="hash", **kw)


def make_vec(ckpt, n, **kw):
    return gym.make_vec(envs.WORLD_ID, num_envs=n, vectorization_mode="vector_entry_point",
                        checkpoint=ckpt, text_encoder="hash", **kw)


def rollout(env, actions, **reset_kw):
    obs, _ = env.reset(**reset_kw)
    return np.stack([obs] + [env.step(a)[0] for a in actions])


# -- the Gymnasium contract --------------------------------------------------------------------


@pytest.mark.parametrize("start", ["generated", "teacher"])
def test_check_env_passes_as_a_deterministic_env(ckpt, start):
    env = make(ckpt, start=start)
    assert not env.spec.nondeterministic and env.spec.max_episode_steps == 1000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert not [str(w.message) for w in caught if "gymnasium" in w.filename], "check_env warned"
    env.close()
    env.close()  # safe twice


def test_spaces_and_actions_are_the_teachers(ckpt):
    teacher, world, vec = gym.make(envs.TEACHER_ID), make(ckpt), make_vec(ckpt, 2)
    assert world.observation_space == teacher.observation_space == vec.single_observation_space
    assert world.action_space == teacher.action_space == vec.single_action_space
    assert world.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert world.unwrapped.get_action_meanings() == teacher.unwrapped.get_action_meanings()
    assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP


def test_same_seed_same_world_and_info(ckpt):
    a = rollout(make(ckpt), ACTIONS, seed=3, options={"prompt": "a snowy forest"})
    b = rollout(make(ckpt), ACTIONS, seed=3, options={"prompt": "a snowy forest"})
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(rollout(make(ckpt), ACTIONS, seed=4, options={"prompt": "a snowy forest"}), a)
    env = make(ckpt, prompt="grass")
    _, info = env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(1)
    assert set(info) == {"frame", "latency_ms", "steps", "prompt", "done_prob"}
    assert info["frame"] == 2 and info["steps"] == 2 and info["prompt"] == "grass"
    assert isinstance(info["latency_ms"], Timing) and info["latency_ms"] > 0
    assert isinstance(reward, float) and terminated == (info["done_prob"] > 0.5) and truncated is False


@pytest.fixture(scope="module")
def smooth_ckpt(tmp_path_factory):
    """The tiny checkpoint of a smooth-motion game (checkpoints from before game.motion read so)."""
    from world.model import build_model

    path = tmp_path_factory.mktemp("smooth") / "tiny"
    build_model("tiny", game={"motion": "smooth"}).randomize_(0).save(path)
    return path


@pytest.mark.parametrize("motion", ["tile", "smooth"])
def test_teacher_start_is_the_teachers_first_frame(ckpt, smooth_ckpt, motion):
    path = ckpt if motion == "tile" else smooth_ckpt  # the tiny preset is tile
    env = make(path, start="teacher")
    assert env.unwrapped.motion == motion == make_vec(path, 2).unwrapped.motion
    obs, info = env.reset(seed=7)
    t_obs, t_info = gym.make(envs.TEACHER_ID, motion=motion).reset(seed=7)
    np.testing.assert_array_equal(obs, t_obs)  # the teacher in the checkpoint's motion mode
    other, _ = gym.make(envs.TEACHER_ID, motion="smooth" if motion == "tile" else "tile").reset(seed=7)
    assert not np.array_equal(obs, other)
    assert info["prompt"] == t_info["caption"]  # "" takes the teacher's caption
    obs, info = make(path, start="teacher").reset(seed=7, options={"prompt": "a desert at noon"})
    t_obs, _ = gym.make(envs.TEACHER_ID, motion=motion).reset(seed=7, options={"prompt": "a desert at noon"})
    np.testing.assert_array_equal(obs, t_obs)
    assert info["prompt"] == "a desert at noon"
    vec_obs, _ = make_vec(path, 2, start="teacher").reset(seed=[7, 7])
    np.testing.assert_array_equal(vec_obs[1], gym.make(envs.TEACHER_ID, motion=motion).reset(seed=7)[0])


def test_prompt_changes_mid_episode_and_reset_goes_back(ckpt):
    env = make(ckpt, prompt="grass")
    plain = rollout(env, ACTIONS, seed=1)
    env.reset(seed=1)
    for a in ACTIONS[:5]:
        env.step(a)
    env.unwrapped.set_prompt("a volcanic plain at night")
    steps = [env.step(a) for a in ACTIONS[5:]]
    assert steps[-1][4]["prompt"] == "a volcanic plain at night"
    assert not np.array_equal(np.stack([s[0] for s in steps]), plain[6:])
    assert env.reset(seed=1)[1]["prompt"] == "grass"
    with pytest.raises(TypeError, match="str"):
        env.unwrapped.set_prompt(3)


def test_start_frame_and_snapshot_options(ckpt, tmp_path):
    env = make(ckpt)
    start = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    obs, info = env.reset(seed=0, options={"start_frame": start})
    np.testing.assert_array_equal(obs, start)
    for a in ACTIONS[:4]:
        shown = env.step(a)[0]
    path = env.unwrapped.save(tmp_path / "world.safetensors")
    after = np.stack([env.step(a)[0] for a in ACTIONS])
    other = make(ckpt)
    obs, info = other.reset(options={"snapshot": path})
    np.testing.assert_array_equal(obs, shown)
    assert info["frame"] == 5
    np.testing.assert_array_equal(np.stack([other.step(a)[0] for a in ACTIONS]), after)


# -- the vector env ------------------------------------------------------------------------------


def test_vector_equals_single_envs_through_autoreset(ckpt):
    """B worlds in one forward pass == B single envs (same seeds, prompts, actions), including the
    NEXT_STEP autoreset: the vector env's restart equals the single env's seedless reset()."""
    seeds, prompts, T = [5, 9, 11], ["a desert at noon", "a swamp in the rain", "a snowy forest"], 4
    vec = make_vec(ckpt, 3, max_episode_steps=T, done_threshold=1.0)  # ends by truncation only
    acts = [np.array([a, (a + 1) % 6, (a + 2) % 6]) for a in ACTIONS]
    obs, _ = vec.reset(seed=seeds, options={"prompt": prompts})
    frames = [obs] + [vec.step(a)[0] for a in acts]  # step T truncates, step T + 1 restarts
    for w in range(3):
        single = make(ckpt, max_episode_steps=T, done_threshold=1.0)
        want, restart = [single.reset(seed=seeds[w], options={"prompt": prompts[w]})[0]], False
        for a in acts:
            if restart:  # NEXT_STEP: the step after truncation only restarts (its action is ignored)
                obs, _ = single.reset(options={"prompt": prompts[w]})
                restart = False
            else:
                obs, _, _, restart, _ = single.step(int(a[w]))
            want.append(obs)
        assert_same_up_to_rounding(np.stack(frames)[:, w], np.stack(want))


def test_autoreset_is_next_step(ckpt, monkeypatch):
    vec = make_vec(ckpt, 2, max_episode_steps=3, prompt="grass")
    vec.reset(seed=0, options={"prompt": ["snow", "sand"]})
    vec.unwrapped.set_prompt("lava", env=0)  # mid-episode only: the restart goes back to "snow"
    session = vec.unwrapped.session
    advance = session.advance
    done = iter([[0.9, 0.1], [0.1, 0.1], [0.1, 0.1], [0.1, 0.1]])  # env 0 ends at the first step
    monkeypatch.setattr(session, "advance", lambda a: advance(a)._replace(done=np.array(next(done), np.float32)))
    a = np.array([1, 2])
    _, reward, term, trunc, info = vec.step(a)
    assert term.tolist() == [True, False] and trunc.tolist() == [False, False]
    obs, reward, term, trunc, info = vec.step(a)  # env 0 restarts, env 1 steps
    assert reward[0] == 0.0 and term.tolist() == [False, False] and trunc.tolist() == [False, False]
    assert info["frame"].tolist() == [1, 3] and info["prompt"].tolist() == ["snow", "sand"]
    assert info["_frame"].all() and obs.shape == (2, 64, 64, 3)
    _, _, term, trunc, _ = vec.step(a)  # env 1 reaches max_episode_steps = 3
    assert term.tolist() == [False, False] and trunc.tolist() == [False, True]
    _, reward, _, trunc, info = vec.step(a)
    assert info["frame"].tolist() == [3, 1] and reward[1] == 0.0 and not trunc.any()
    vec.close()
    vec.close()


def test_vector_render_and_save_resume(ckpt, tmp_path):
    vec = make_vec(ckpt, 2, render_mode="rgb_array", done_threshold=1.0)
    obs, _ = vec.reset(seed=[1, 2])
    frames = vec.render()
    assert len(frames) == 2 and np.array_equal(frames[1], obs[1])
    path = vec.unwrapped.save(tmp_path / "worlds.safetensors")
    after = vec.step(np.array([4, 4]))[0]
    again, _ = vec.reset(options={"snapshot": path})
    np.testing.assert_array_equal(again, obs)
    np.testing.assert_array_equal(vec.step(np.array([4, 4]))[0], after)
    wrapped = gym.wrappers.vector.RecordEpisodeStatistics(gym.wrappers.vector.ResizeObservation(vec, (32, 32)))
    assert wrapped.reset(seed=np.int64(3))[0].shape == (2, 32, 32, 3)
    assert wrapped.step(np.array([1, 2]))[0].shape == (2, 32, 32, 3)


# -- wrappers and agents ---------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", [envs.WORLD_ID, envs.TEACHER_ID])
def test_wrappers_work(ckpt, env_id, tmp_path):
    pytest.importorskip("moviepy")
    kw = {"checkpoint": ckpt, "text_encoder": "hash", "done_threshold": 1.0} if env_id == envs.WORLD_ID else {}
    env = gym.make(env_id, render_mode="rgb_array", max_episode_steps=6, **kw)
    env = gym.wrappers.RecordVideo(env, str(tmp_path / "videos"), episode_trigger=lambda e: True,
                                   disable_logger=True)
    env = gym.wrappers.ResizeObservation(env, (32, 32))
    env = gym.wrappers.FrameStackObservation(env, 4)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 32, 32, 3) and obs.dtype == np.uint8 and obs in env.observation_space
    done = False
    while not done:
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        done = terminated or truncated
    env.close()
    assert list((tmp_path / "videos").glob("*.mp4")), "RecordVideo wrote no video"


def test_ppo_trains_in_imagination_and_plays_the_teacher(ckpt, tmp_path):
    from safetensors.torch import load_file, save_file

    from demos import ppo

    out = tmp_path / "ppo" / "results.json"
    report = ppo.main(["--env-ids", envs.WORLD_ID, envs.TEACHER_ID, "--checkpoint", str(ckpt), "--text-encoder", "hash",
                       "--minutes", "5", "--total-steps", "192", "--num-envs", "4", "--num-steps", "16",
                       "--eval-episodes", "1", "--eval-max-steps", "40", "--curve-every", "128", "--out", str(out),
                       "--no-progress"])
    saved = json.loads(out.read_text())
    assert saved["eval"]["motion"] == "tile"  # the teacher plays the checkpoint's game (tiny: tile steps)
    assert saved["results"].keys() == {"random", envs.WORLD_ID, envs.TEACHER_ID} == report["results"].keys()
    for env_id in (envs.WORLD_ID, envs.TEACHER_ID):
        assert saved["results"][env_id]["train"]["env_steps"] == 192
        assert len(saved["results"][env_id]["gems_per_episode"]) == 1
        assert [p[0] for p in saved["results"][env_id]["train"]["curve"]] == [128, 192]  # every 128 + the end
    assert out.with_suffix(".png").stat().st_size > 0
    weights = load_file(str(out.parent / "policy_World-v0.safetensors"))  # no pickle
    assert weights and all(torch.isfinite(w).all() for w in weights.values())

    # Replaying the saved policy in the real game (no training) scores it the way the run did.
    policy = out.parent / "policy_World-v0.safetensors"
    again = ppo.main(["--policies", str(policy), "--checkpoint", str(ckpt), "--eval-episodes", "1",
                      "--eval-max-steps", "40", "--out", str(tmp_path / "replay.json"), "--no-progress"])
    assert again["results"].keys() == {"random", str(policy)}
    assert again["results"][str(policy)]["gems_per_episode"] == saved["results"][envs.WORLD_ID]["gems_per_episode"]
    assert json.loads((tmp_path / "replay.json").read_text())["args"]["policies"] == [str(policy)]
    (tmp_path / "junk.safetensors").write_bytes(b"not a policy")
    crafter_sized = tmp_path / "wrong.safetensors"
    save_file({k: torch.zeros(17, *v.shape[1:]) if k.startswith("actor") else v for k, v in weights.items()},
              str(crafter_sized))
    for bad, message in ((tmp_path / "missing.safetensors", "no saved policy"),
                         (tmp_path / "junk.safetensors", "not a readable safetensors"),
                         (crafter_sized, "not a PPO policy for this game")):
        with pytest.raises(SystemExit, match=message):
            ppo.main(["--policies", str(bad), "--checkpoint", str(ckpt), "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit, match="give one of them"):
        ppo.main(["--policies", str(policy), "--env-ids", envs.WORLD_ID, "--out", str(tmp_path / "x.json")])


def test_gae_bootstraps_a_time_limit_not_a_true_end():
    from demos.ppo import gae

    # One env, 4 steps: an episode ends after step 1, a reset step 2, a new episode at step 3.
    rewards = torch.tensor([[0.0], [1.0], [0.0], [0.0]])
    values = torch.tensor([[0.5], [0.5], [2.0], [0.5]])  # values[2]: the ended episode's last obs
    dones = torch.tensor([[0.0], [0.0], [1.0], [0.0]])
    nxt, nxt_done = torch.tensor([0.5]), torch.tensor([0.0])
    kept = dict(next_value=nxt, next_done=nxt_done, gamma=0.9, lam=1.0)
    cut = gae(rewards, values, dones, torch.tensor([[0.0], [0.0], [0.0], [0.0]]), **kept)  # time limit
    end = gae(rewards, values, dones, torch.tensor([[0.0], [1.0], [0.0], [0.0]]), **kept)  # terminated
    assert cut[1, 0].item() == pytest.approx(1.0 + 0.9 * 2.0 - 0.5)  # the last obs's value bootstraps
    assert end[1, 0].item() == pytest.approx(1.0 - 0.5)               # a true end pays nothing after
    # The chain stops at the end either way: step 0 sees step 1, never the new episode's step 3.
    assert cut[0, 0].item() == pytest.approx(0.9 * 0.5 - 0.5 + 0.9 * cut[1, 0].item())
    assert cut[3, 0].item() == end[3, 0].item() == pytest.approx(0.9 * 0.5 - 0.5)


def test_bench_env_reports_steps_per_second():
    from envs.bench import bench_env

    r = bench_env(random_init=True, frames=2, batches=(2,), text_encoder="hash", progress=False)
    single, vec = r["results"]["single"], r["results"]["vector_2"]
    assert single["steps_per_s"] > 0 and vec["env_steps"] == 4
    # One env step costs the same FLOPs alone or in a batch (the batch only shares the call).
    assert single["gflop_per_env_step"] > 0 and vec["gflop_per_env_step"] == pytest.approx(
        single["gflop_per_env_step"], rel=0.02)
    assert r["machine_gemm_gflops"] > 0 and r["speedup_bound_vs_single"] > 0


def test_count_flops_sees_matmul_and_cpu_attention():
    from world.bench import count_flops

    q, k = torch.randn(1, 2, 8, 16), torch.randn(1, 2, 32, 16)
    flops = count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, k, attn_mask=torch.zeros(8, 32)))
    assert flops["total"] == 2 * (2 * 8 * 32 * 16) * 2  # QK^T and AV, 2 heads
    assert count_flops(lambda: torch.randn(4, 5) @ torch.randn(5, 6))["total"] == 2 * 4 * 5 * 6


# -- bad input ----------------------------------------------------------------------------------------


def test_bad_actions_and_options_say_what_is_valid(ckpt):
    env = make(ckpt).unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\[0, 6\).*0 NOOP.*5 USE"):
        env.step(6)
    for bad in (1.5, True, "up", None):
        with pytest.raises(TypeError, match=r"an int in \[0, 6\)"):
            env.step(bad)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(np.array([1, 2]))
    env.step(np.int64(1))
    env.step(np.array(2))
    with pytest.raises(ValueError, match=r"unknown reset options \['seed'\]; valid: 'prompt', 'start_frame', 'snapshot'"):
        env.reset(options={"seed": 1})
    with pytest.raises(TypeError, match="options must be a dict"):
        env.reset(options=["prompt"])
    with pytest.raises(TypeError, match=r"options\['prompt'\] must be a str"):
        env.reset(options={"prompt": ["a", "b"]})
    with pytest.raises(ValueError, match=r"start_frame'\] must be uint8 \[64, 64, 3\], got shape \[32, 32, 3\]"):
        env.reset(options={"start_frame": np.zeros((32, 32, 3), np.uint8)})
    with pytest.raises(TypeError, match="got dtype float32"):
        env.reset(options={"start_frame": np.zeros((64, 64, 3), np.float32)})
    with pytest.raises(TypeError, match="snapshot.*path"):
        env.reset(options={"snapshot": 3})
    with pytest.raises(ValueError, match="give it alone"):
        env.reset(options={"snapshot": "x.safetensors", "prompt": "snow"})


def test_bad_vector_input(ckpt):
    vec = make_vec(ckpt, 2)
    with pytest.raises(ValueError, match="list of 2"):
        vec.reset(seed=[1, 2, 3])
    with pytest.raises(ValueError, match="one per env"):
        vec.reset(options={"prompt": ["a", "b", "c"]})
    with pytest.raises(TypeError, match="entries must be str"):
        vec.reset(options={"prompt": ["a", 2]})
    with pytest.raises(ValueError, match=r"\[2, 64, 64, 3\]"):
        vec.reset(options={"start_frame": np.zeros((3, 64, 64, 3), np.uint8)})
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2,\), one per env"):
        vec.step(np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="float64"):
        vec.step(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"2 ints in \[0, 6\).*got \[1, 7\]"):
        vec.step(np.array([1, 7]))
    with pytest.raises(ValueError, match="env must be"):
        vec.unwrapped.set_prompt("snow", env=2)


def test_bad_construction(ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(world_env, "DEFAULT_CHECKPOINT", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*run `make train` or pass checkpoint="):
        WorldEnv()
    with pytest.raises(ValueError, match="start must be one of"):
        WorldEnv(checkpoint=ckpt, text_encoder="hash", start="random")
    with pytest.raises(ValueError, match="render_mode"):
        WorldEnv(checkpoint=ckpt, text_encoder="hash", render_mode="ansi")
    with pytest.raises(ValueError, match="num_envs"):
        WorldVectorEnv(num_envs=0, checkpoint=ckpt, text_encoder="hash")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="display detection is for Linux")
def test_human_mode_without_a_display_says_so(ckpt, monkeypatch):
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(var, raising=False)
    env = WorldEnv(checkpoint=ckpt, text_encoder="hash", render_mode="human")
    with pytest.raises(RuntimeError, match="no display.*rgb_array"):
        env.reset(seed=0)


def test_a_non_finite_frame_ends_the_episode_instead_of_raising(ckpt):
    env = make(ckpt)
    env.reset(seed=0)
    session = env.unwrapped.session
    real = session.backend
    session.backend = lambda state, action, steps: real(state, action, steps)._replace(
        reward=torch.tensor([float("nan")]))
    with pytest.warns(RuntimeWarning, match="non-finite"):
        obs, reward, terminated, truncated, info = env.step(4)
    assert terminated and reward == 0.0 and obs.shape == (64, 64, 3)
