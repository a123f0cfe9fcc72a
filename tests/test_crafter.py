"""Crafter (issue 18): the Gymnasium wrapper, recording, a tiny training run and its eval, on the real package."""
from __future__ import annotations

import json

import numpy as np
import pytest

crafter = pytest.importorskip("crafter")

from envs.crafter import CAPTION, CrafterEnv  # noqa: E402
from envs.evaluate.config import eval_seeds  # noqa: E402
from world.actions import CRAFTER_ACTIONS  # noqa: E402


def test_passes_gymnasium_check_env():
    from gymnasium.utils.env_checker import check_env

    check_env(CrafterEnv(), skip_render_check=False)


def test_registered_id_and_action_names_follow_crafter():
    import gymnasium as gym

    env = gym.make("envs:EchoInfinity/Crafter-v0")
    assert env.action_space.n == 17 and env.observation_space.shape == (64, 64, 3)
    names = {"move_left": "LEFT", "move_right": "RIGHT", "move_up": "UP", "move_down": "DOWN", "do": "USE"}
    assert tuple(names.get(a, a.upper()) for a in crafter.constants.actions) == CRAFTER_ACTIONS
    assert env.unwrapped.get_action_meanings() == list(CRAFTER_ACTIONS)
    env.close()


def test_same_seed_same_actions_same_frames_and_positions_in_pixels():
    runs = []
    for _ in range(2):
        env = CrafterEnv()
        obs, info = env.reset(seed=7)
        frames, positions = [obs], [info["position"]]
        for a in (2, 2, 3, 5, 1, 4, 0, 6):
            obs, r, term, trunc, info = env.step(a)
            frames.append(obs)
            positions.append(info["position"])
        runs.append((np.stack(frames), positions))
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert runs[0][1][1][0] - runs[0][1][0][0] in (0, 8)       # one move = one 8-px tile (or blocked)
    assert info["caption"] == CAPTION and "wood" in info["inventory"] and "collect_wood" in info["achievements"]
    other = CrafterEnv()
    assert not np.array_equal(other.reset(seed=8)[0], runs[0][0][0])


def test_a_long_policy_run_of_one_seed_repeats_exactly():
    """Crafter 1.8.3 iterates each chunk's creatures as a set (memory order) and despawns one by a
    random index into it: without the wrapper's ordered chunks this run parts ways by frame ~40."""
    from envs.evaluate.crafter import crafter_run

    a, b = crafter_run(90000, 200), crafter_run(90000, 200)
    assert a.alive > 100 and np.array_equal(a.actions, b.actions) and np.array_equal(a.frames, b.frames)


def test_bad_input_is_a_clear_error():
    env = CrafterEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    for bad in (17, -1, 2.5, True, "UP"):
        with pytest.raises(ValueError, match="invalid action"):
            env.step(bad)
    with pytest.raises(ValueError, match="no reset options"):
        env.reset(options={"prompt": "snow"})
    with pytest.raises(ValueError, match="render_mode"):
        CrafterEnv(render_mode="human")


def test_blocks_and_hazard_queries_agree_with_the_step():
    env = CrafterEnv()
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(150):
        a = int(rng.integers(1, 5))                     # a move
        blocked, pos = env.blocks(a), env.unwrapped._info(None)["position"]
        _, _, term, trunc, info = env.step(a)
        assert blocked == (info["position"] == pos)
        checked += 1
        if term or trunc:
            break
    assert checked > 20


def test_record_crafter_with_both_policies(tmp_path):
    from envs.record import record_episodes
    from envs.shards import list_shards, load_episode

    for policy, seed in (("explore", 1), ("revisit", 2)):
        out = tmp_path / policy
        stats = record_episodes("crafter", policy, episodes=2, steps=60, out_dir=out, seed=seed, progress=False)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["env_id"] == "envs:EchoInfinity/Crafter-v0"
        assert manifest["action_meanings"] == list(CRAFTER_ACTIONS) and stats["frames"] > 60
        ep = load_episode(list_shards(out)[0])
        assert ep.frames.shape[1:] == (64, 64, 3) and ep.actions.max() < 17
        assert (np.diff(ep.positions, axis=0) % 8 == 0).all()        # positions in pixels, tile steps


def test_explore_uses_crafters_other_actions_and_keeps_the_teachers_stream():
    from envs.policies import make_policy
    from envs.teacher import TeacherEnv

    env = CrafterEnv()
    _, info = env.reset(seed=0)
    pol = make_policy("explore", env, np.random.default_rng(0))
    pol.reset(info)
    acts = np.array([pol.act(info) for _ in range(600)])
    assert (acts == CRAFTER_ACTIONS.index("USE")).mean() > 0.08          # Crafter's explore_defaults
    assert (acts >= CRAFTER_ACTIONS.index("SLEEP")).sum() > 5            # sleep / place / make appear
    teacher = TeacherEnv(motion="tile")
    _, info = teacher.reset(seed=0)
    pol = make_policy("explore", teacher, np.random.default_rng(0))
    assert pol.others == [] and pol.use_prob == 0.03                     # the teacher's recordings stay as they were


def test_crafter_preset_needs_its_actions():
    from world.config import from_preset

    cfg = from_preset("crafter-tiny")
    assert cfg.game.env == "crafter" and cfg.dit.num_actions == 17
    with pytest.raises(ValueError, match="num_actions"):
        from_preset("crafter-tiny", dit={"num_actions": 8})
    with pytest.raises(ValueError, match="game.env"):
        from_preset("tiny", game={"env": "doom"})


def test_seen_mask_follows_the_player():
    from envs.evaluate.crafter import seen_mask

    assert seen_mask((256, 256), (256, 256)).reshape(8, 8, 8, 8)[:, 0, :, 0].sum() == 6 * 8 - 1  # all but the player
    up2 = seen_mask((256, 240), (256, 256)).reshape(8, 8, 8, 8)[:, 0, :, 0]
    assert up2[:2].sum() == 0 and up2[2:6].sum() == 4 * 8 - 2 and up2[6:].sum() == 0   # status rows never count
    assert not seen_mask((256 + 8 * 8, 256), (256, 256)).any()


def test_status_bar_drawn_takes_any_real_bar_and_rejects_a_faded_moved_or_swapped_one(monkeypatch):
    import envs.evaluate.crafter as C

    monkeypatch.setattr(C, "REFERENCE_WORLDS", 2)
    monkeypatch.setattr(C, "REFERENCE_FRAMES", 40)
    C.tile_library.cache_clear()
    lib = C.tile_library()
    f = C.crafter_run(eval_seeds(1)[0], 8).frames  # a world the library never saw
    y = C.STATUS_Y
    faded = f.astype(np.float32)
    faded[:, y:] = faded[:, y:].mean(axis=(1, 2), keepdims=True)  # the bar's mean colour: near an empty slot
    moved = f.copy()
    moved[:, y:, 1:] = f[:, y:, :-1]
    swapped = f.copy()
    swapped[:, y:y + C.TILE, :C.TILE] = f[:, y:y + C.TILE, C.TILE:2 * C.TILE]  # food where health belongs
    noisy = np.clip(f + np.random.default_rng(0).normal(0, 6, f.shape), 0, 255).astype(np.uint8)
    assert C.status_bar_drawn(f, lib).all() and C.status_bar_drawn(noisy, lib).all()
    for bad in (faded.astype(np.uint8), moved, swapped):
        assert not C.status_bar_drawn(bad, lib).any()
    C.tile_library.cache_clear()


def test_teacher_forced_split_on_the_real_frames():
    """The previous real frame moved with the camera is the next frame over the shown pixels (in
    the first frames' daylight only the few moving creatures differ); the split's ceiling is exact
    when the frames themselves are scored, and a move brings in one row or column of tiles."""
    from envs.evaluate.crafter import STATUS_Y, crafter_run, reproject_view, seen_mask, teacher_forced_split

    ep = crafter_run(90_000, 24)
    true = ep.frames[None]  # [1, 25, 64, 64, 3]
    pos = np.array(ep.positions)
    moved = np.flatnonzero((pos[1:] != pos[:-1]).any(-1))
    assert len(moved) >= 4
    for t in moved:
        copy = reproject_view(true[0, t], ep.positions[t], ep.positions[t + 1])
        assert (copy[STATUS_Y:] == true[0, t, STATUS_Y:]).all()
        shown = seen_mask(ep.positions[t + 1], ep.positions[t])
        err = lambda frame: np.abs(frame.astype(int) - true[0, t + 1])[shown].mean()  # noqa: E731
        assert err(copy) < 0.5 * err(true[0, t])  # the copy follows the camera, the plain one does not
    still = reproject_view(true[0, 0], ep.positions[0], ep.positions[0])
    assert (still == true[0, 0]).all()
    alive = np.ones((1, 24), bool)
    out = teacher_forced_split([ep], true[:, 1:], true, true[:, 1:], alive)
    assert out["teacher_forced_psnr_shown"] == out["tokenizer_psnr_shown"] == 100.0  # the PSNR cap
    assert out["copy_moved_psnr_shown"] > 30
    assert out["teacher_forced_psnr_known"] == out["teacher_forced_psnr_known_exact"] == 100.0
    half = true[:, 1:].copy()
    half[..., :32, :] = 0  # wrong on the top half of every frame: the edge's share of it is what stays
    part = teacher_forced_split([ep], half, true, true[:, 1:], alive)
    assert part["teacher_forced_psnr_known"] < part["teacher_forced_psnr_known_exact"] < 100.0
    # a move brings in a column of 6 tiles or a row of 8, and the tile the player left is not shown
    tiles = [(6 if pos[t + 1, 0] != pos[t, 0] else 8) + 1 for t in moved]
    assert out["teacher_forced_edge_share"] == pytest.approx(sum(tiles) * 64 / 4096 / 24)


@pytest.mark.timeout(300)
def test_train_and_eval_a_tiny_crafter_model(tmp_path, monkeypatch):
    """Record, train every stage for a few steps, and run the Crafter eval (quick) on it (a 2-world tile
    library: the player check passes on fewer true frames than with the full one)."""
    from demos.cli import main
    import envs.evaluate.crafter as C

    monkeypatch.setattr(C, "REFERENCE_WORLDS", 2)
    monkeypatch.setattr(C, "REFERENCE_FRAMES", 40)
    C.tile_library.cache_clear()
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["record", "--env", "crafter", "--episodes", "2", "--steps", "40", "--out", str(data),
                 "--no-progress"]) == 0
    assert main(["train", "--data", str(data), "--preset", "crafter-tiny", "--out", str(run), "--threads", "1",
                 "--model", '{"dit": {"depth": 1, "dim": 64}, "tokenizer": {"codebook_size": 64}}',
                 "--text-encoder", "hash", "--tok-steps", "2", "--decoder-steps", "0", "--s1-steps", "2",
                 "--s2-steps", "1", "--codebook-frames", "64", "--codebook-iters", "1", "--no-progress"]) == 0
    assert json.loads((run / "config.json").read_text())["game"]["env"] == "crafter"
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(run), "--quick", "--seeds", "1", "--stability-frames", "16",
                 "--no-progress", "--json", str(out), "--report", str(tmp_path / "report")]) == 0
    result = json.loads(out.read_text())
    assert result["game"] == "crafter" and set(result["skipped"]) == {"revisit", "adherence", "ablations"}
    h = result["heads"]  # against Crafter's own rewards and deaths
    assert h["worlds"] == 2 and h["frames"] == 16 and set(h["free_running"]) == {"reward", "done"}
    det = result["fidelity_detail"]
    assert det["player_visible_true"] > 0.5 and 0 <= det["status_bar_kept_tokenizer"] <= 1
    assert det["status_bar_kept_frozen_by_horizon"]["1"] in (0.0, 0.5, 1.0)  # 2 worlds' true bars, frame 0 vs 1
    assert det["status_bar_drawn_true"] == 1.0 and 0 <= result["stability"]["status_bar_drawn_share"] <= 1
    assert set(result["psnr_by_horizon"]) == {"1", "4", "16"} and result["stability"]["frames"] == 16
    report = (tmp_path / "report" / "report.md").read_text()
    assert "status bar kept" in report and "status bar drawn" in report and "Over the pixels the previous true frame showed" in report
    # "moved" is the camera's move (Crafter's daylight changes every frame, so every frame differs)
    ep = C.crafter_run(eval_seeds(1)[0], 16)
    pos = np.array(ep.positions[:det["teacher_forced_frames"] + 1])
    assert det["teacher_forced_moved_share"] == pytest.approx((pos[1:] != pos[:-1]).any(-1).mean())
    assert {"teacher_forced_psnr_shown", "teacher_forced_psnr_edge", "tokenizer_psnr_shown",
            "copy_moved_psnr_shown", "teacher_forced_edge_share", "teacher_forced_psnr_known",
            "tokenizer_psnr_known", "teacher_forced_psnr_known_exact", "tokenizer_psnr_teacher_forced"} <= set(det)
    C.tile_library.cache_clear()


# --- the front ends on a Crafter checkpoint ------------------------------------------------------

@pytest.fixture(scope="module")
def crafter_ckpt(tmp_path_factory):
    """A random-init `crafter-tiny` checkpoint (hash text encoder, no snap: see conftest's `ckpt`)."""
    import torch

    from world.model import build_model

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("ckpt") / "crafter-tiny"
    build_model("crafter-tiny", sampler={"snap": False}).randomize_(0).save(path)
    (path / "trainer.json").write_text(json.dumps({"train_config": {"text_encoder": "hash"}}))
    return path


def test_world_env_on_a_crafter_checkpoint_has_crafters_spaces(crafter_ckpt):
    from envs.world_env import WorldEnv

    env = WorldEnv(checkpoint=crafter_ckpt, text_encoder="hash", start="teacher", steps=1)
    assert env.action_space.n == 17 and env.get_action_meanings() == list(CRAFTER_ACTIONS)
    obs, info = env.reset(seed=5)
    real, _ = CrafterEnv().reset(seed=5)
    assert np.array_equal(obs, real) and info["prompt"] == CAPTION   # started from Crafter's first frame
    env.step(16)                                                      # MAKE_IRON_SWORD: a Crafter action
    with pytest.raises(ValueError, match="MAKE_IRON_SWORD"):
        env.step(17)
    env.close()


def test_play_maps_crafters_keys_and_compares_with_the_real_game(tmp_path, monkeypatch, capsys, crafter_ckpt):
    import argparse

    import pygame

    from demos import play
    from demos.keys import HeldKeys
    from demos.source import CompareSource, ModelSource

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setattr(pygame.key, "get_pressed", lambda: HeldKeys(()))
    source = CompareSource(ModelSource(crafter_ckpt, text_encoder="hash", steps=1))
    cfg = play.PlayConfig(seed=3, prompt=None, fps=0, screenshot_dir=tmp_path / "s", record_dir=tmp_path / "r",
                          save_dir=tmp_path / "v")
    app = play.PlayApp(source, cfg)
    app.open()
    real, _ = CrafterEnv().reset(seed=3)
    assert np.array_equal(app.frame[:, :64], real) and np.array_equal(app.frame[:, 64:], real)
    assert source.labels[0] == "crafter (truth)"
    for key in ("K_TAB", "K_x", "K_6", "K_SPACE"):
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=getattr(pygame, key), mod=0, unicode="", scancode=0))
        assert app.tick()
    assert [e[1] for e in app.episode_events] == [CRAFTER_ACTIONS.index(a) for a in
                                                  ("SLEEP", "PLACE_TABLE", "MAKE_IRON_SWORD", "USE")]
    assert not app.apply_prompt("a snowy forest")                 # no prompt in Crafter: a toast, no change
    app.close()
    parser = argparse.ArgumentParser()
    play.add_arguments(parser)
    argv = ["--checkpoint", str(crafter_ckpt), "--text-encoder", "hash", "--headless", "--frames", "12"]
    assert play.main(parser.parse_args(argv)) == 0 and play.main(parser.parse_args(argv + ["--compare"])) == 0
    assert capsys.readouterr().out.count("frames") >= 2


def test_ppo_on_a_crafter_checkpoint_is_scored_on_crafters_achievements(crafter_ckpt, tmp_path):
    from demos import ppo

    out = tmp_path / "ppo" / "results.json"
    report = ppo.main(["--checkpoint", str(crafter_ckpt), "--text-encoder", "hash", "--minutes", "5",
                       "--total-steps", "64", "--num-envs", "2", "--num-steps", "16", "--eval-episodes", "2",
                       "--eval-max-steps", "30", "--out", str(out), "--no-progress"])
    assert report["eval"]["env"] == "EchoInfinity/Crafter-v0"
    results = json.loads(out.read_text())["results"]
    assert results.keys() == {"random", "EchoInfinity/World-v0", "EchoInfinity/Crafter-v0"}
    for r in results.values():
        assert len(r["achievements_per_episode"]) == 2 and len(r["success_rates"]) == 22
        assert 0 <= r["crafter_score"] <= 100
    assert results["EchoInfinity/World-v0"]["train"]["env_steps"] == 64
