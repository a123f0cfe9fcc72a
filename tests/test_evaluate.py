"""`echo-infinity eval`: metrics, seeds, the biome classifier, and a quick run of the whole harness."""

import json
import math

import numpy as np
import pytest
import torch

from envs import evaluate as E
from envs.biome_classifier import CLASSIFIER_SEED_BASE, QUICK, load_or_train


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def checkpoint(ckpt):
    return ckpt


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("eval_cache")


@pytest.fixture(scope="module")
def classifier(cache_dir):
    return load_or_train(QUICK, cache_dir)  # the one `--quick` uses, trained once for this module


def test_eval_seeds_are_disjoint_from_training_and_helper_seeds():
    evals = set(E.eval_seeds(1000))
    assert min(evals) == E.EVAL_SEED_BASE and len(evals) == 1000
    for record_seed in E.TRAINING_RECORD_SEEDS:
        train = set(E.training_env_seeds(record_seed, 1000))  # `make train` records 30 episodes per seed
        assert len(train) == 1000 and not evals & train
    classifier = set(range(CLASSIFIER_SEED_BASE, CLASSIFIER_SEED_BASE + 2000))
    ranges = set(range(E.RANGE_SEED_BASE, E.RANGE_SEED_BASE + 96))
    assert not evals & classifier and not evals & ranges and not classifier & ranges


def test_training_env_seeds_match_what_record_resets_with(tmp_path):
    from envs.record import record_episodes
    from envs.shards import list_shards, load_episode

    record_episodes("teacher", "explore", 2, 1, tmp_path, seed=1, progress=False)
    recorded = [load_episode(p).meta["env_seed"] for p in list_shards(tmp_path)]
    assert recorded == E.training_env_seeds(1, 2)


def test_psnr_and_ssim():
    rng = np.random.default_rng(0)
    from envs.teacher import TeacherEnv

    img, _ = TeacherEnv().reset(seed=E.EVAL_SEED_BASE)
    assert E.psnr(img, img) == E.PSNR_CAP
    assert E.ssim(img, img) == pytest.approx(1.0, abs=1e-9)
    a, b = np.zeros((2, 16, 16, 3), np.uint8), np.full((2, 16, 16, 3), 16, np.uint8)  # MSE 256
    assert E.psnr(a, b) == pytest.approx([10 * math.log10(255**2 / 256)] * 2)
    noise = rng.integers(0, 256, img.shape, dtype=np.uint8)
    assert E.ssim(noise, img) < 0.1
    assert E.psnr(noise, img) < 12
    slightly = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    assert 0.5 < E.ssim(slightly, img) < 1.0 and 30 < E.psnr(slightly, img) < E.PSNR_CAP
    # leading shapes are kept and the second argument broadcasts
    stack = np.stack([img, slightly, noise])[None]  # [1, 3, H, W, 3]
    assert E.psnr(stack, img[None, None]).shape == (1, 3)
    assert E.ssim(stack, img).shape == (1, 3)
    assert E.ssim(stack, img)[0, 0] == pytest.approx(1.0) and E.ssim(stack, img)[0, 2] < 0.1


def test_player_check_sees_the_sprite_and_its_absence():
    ep = E.teacher_run(501, 8, 64)
    assert np.all(E.player_psnr(ep.frames, ep.style) >= 40)  # clear weather: the sprite is drawn exactly
    ts = E.style_atlas(ep.style, 64).player.shape[1]
    assert np.all(E.player_psnr(ep.frames, ep.style, (0, 2 * ts)) < 20)  # two tiles off: ground, no player
    flat = np.full_like(ep.frames, 128)  # a collapsed, featureless world
    ref = E.teacher_reference(64, frames=2)
    assert ref["player_absent_p99"] < ref["player_threshold"] < ref["player_present_p1"]
    assert np.all(E.player_psnr(flat, ep.style) < ref["player_threshold"])
    assert np.all(E.player_psnr(ep.frames, ep.style) >= ref["player_threshold"])


def test_biome_classifier_beats_chance_and_is_cached(classifier, cache_dir):
    from envs.style import BIOMES

    assert classifier.accuracy > 0.6 > 3 / len(BIOMES)  # chance is 1/6
    files = list(cache_dir.glob("biome_classifier_*.safetensors"))
    assert [f.name for f in files] == [f"biome_classifier_{QUICK.key()}.safetensors"]
    again = load_or_train(QUICK, cache_dir)  # from the cache: same weights, same answers
    frames = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    assert again.accuracy == classifier.accuracy
    assert (again.predict(frames) == classifier.predict(frames)).all()
    from dataclasses import replace

    assert replace(QUICK, epochs=QUICK.epochs + 1).key() != QUICK.key()


def test_memory_updates_false_keeps_query_init():
    from world.config import from_preset
    from world.model import WorldModel

    def run(updates: bool):
        cfg = from_preset("tiny", tokenizer={"image_size": 16, "channels": [8]},
                          dit={"dim": 32, "depth": 2, "heads": 2}, memory={"window_frames": 4, "memory_tokens_per_frame": 4, "updates": updates})
        model = WorldModel(cfg).eval().randomize_(0)
        state = model.init_state(2)
        for _ in range(12):  # 8 frames pass out of the window
            model.step(state, torch.ones(2, dtype=torch.long))
        init = model.policy.query_init.detach()[None].expand(2, -1, -1)
        return torch.equal(state.memory["queries"], init)

    assert run(False)
    assert not run(True)


def test_checkpoint_runs_every_policy_on_the_same_weights(checkpoint, tmp_path):
    from world.model import build_model

    ck = E.load_checkpoint(checkpoint)
    assert ck.text_encoder == "hash"  # 'auto' read trainer.json
    dit = {k: v for k, v in ck.model().state_dict().items() if k.startswith("dit.")}
    for policy in E.MEMORY_POLICIES:
        model = ck.model(policy=policy)
        assert model.cfg.memory.policy == policy
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in dit.items())
    assert ck.model(updates=False).cfg.memory.updates is False
    build_model("tiny", memory={"policy": "window"}).save(tmp_path / "window")  # no evolving weights
    win = E.load_checkpoint(tmp_path / "window")
    win.model(policy="sink")
    with pytest.raises(ValueError, match="missing"):
        win.model(policy="evolving")


def test_revisit_trajectory_returns_to_the_place_left():
    ev = E.EvalConfig.quick_config(lead_in=8)
    r = E.revisit_trajectory(E.EVAL_SEED_BASE, 16, ev, 64)
    pos = r.episode.positions
    assert len(r.episode.actions) == 8 + 16 + ev.return_frames and r.depart == 8
    assert r.quality == 2 and r.episode.alive == len(r.episode.actions)
    assert pos[8 + 16] == pos[8] == pos[-1] and pos[8 + 8] != pos[8]


def test_quick_harness_json_and_report(checkpoint, cache_dir, classifier, tmp_path):
    from world.model import build_model

    other = tmp_path / "absolute"
    build_model("tiny", memory={"rope": "absolute"}).randomize_(1).save(other)
    ev = E.EvalConfig.quick_config(seeds=1, horizons=(1, 4), away_multiples=(2,), lead_in=4, adherence_frames=2,
                                   switch_after=2, switch_frames=10, switch_curve_frames=12, stability_frames=16,
                                   cache_dir=str(cache_dir),
                                   progress=False)
    result, art = E.run_eval(checkpoint, ev, compare_checkpoint=other)
    E.save_json(result, tmp_path / "e.json")  # strict JSON: no NaN / inf
    r = json.loads((tmp_path / "e.json").read_text())
    names = {"checkpoint", "model", "eval_seeds", "window_frames", "psnr_by_horizon", "ssim_by_horizon",
             "revisit_psnr", "prompt_adherence", "prompt_adherence_detail", "stable", "stability", "ablations",
             "seconds", "skipped", "settings"}
    assert names <= set(r)
    assert r["eval_seeds"] == [E.EVAL_SEED_BASE] and r["window_frames"] == 8
    assert r["model"]["text_encoder"] == "hash" and r["skipped"] == []
    for key, lo, hi in (("psnr_by_horizon", 0, E.PSNR_CAP), ("ssim_by_horizon", -1, 1)):
        assert set(r[key]) == {"1", "4"}
        assert all(lo < v <= hi for v in r[key].values())
    assert set(r["revisit_psnr"]) == set(E.MEMORY_POLICIES)
    for scores in r["revisit_psnr"].values():
        assert set(scores) == {"16"} and 0 < scores["16"] < E.PSNR_CAP
    departure = r["revisit_detail"]["departure_psnr"]  # the model's frame at the place left vs the truth
    assert set(departure) == set(E.MEMORY_POLICIES) and all(0 < v["16"] < E.PSNR_CAP for v in departure.values())
    assert 0 <= r["prompt_adherence"] <= 1
    d = r["prompt_adherence_detail"]
    for k in ("start_heldout", "start_teacher", "start_generated", "switch_within", "switch_at",
              "switch_within_heldout", "switch_within_teacher", "classifier_accuracy"):
        assert 0 <= d[k] <= 1
    assert d["start_teacher"] > 0.5  # the judge recognises the teacher's own frames
    assert d["switch_at_teacher"] > 0.5  # ... and the teacher's style switch (its 8-frame fade is over)
    for k in ("switch_curve", "switch_curve_heldout", "switch_curve_teacher"):
        assert len(d[k]) == 12 and all(0 <= v <= 1 for v in d[k])
    assert d["switch_at"] == d["switch_curve"][9] and d["switch_recache"] is True
    assert set(d["switch_per_biome"]) == set(d["per_biome"]) == set(d["per_biome_generated"])
    assert isinstance(r["stable"], bool) and r["stability"]["frames"] == 16 and r["stability"]["nan_free"]
    assert r["stability"]["latency_ms_p50"] > 0
    # A random-init model draws no player: the collapse check must say so.
    assert r["stability"]["player_visible_share"] < 0.5 and not r["stability"]["player_ok"] and not r["stable"]
    assert set(r["fidelity_detail"]["player_visible_by_horizon"]) == {"1", "4"}
    assert r["fidelity_detail"]["player_visible_tokenizer"] is not None
    fd = r["fidelity_detail"]
    assert fd["teacher_forced_frames"] == 4 and 0 < fd["teacher_forced_psnr"] < E.PSNR_CAP
    assert 0 <= fd["teacher_forced_player_visible"] <= 1 and fd["copy_previous_psnr"] > 0
    for key in ("teacher_forced_psnr_shown", "tokenizer_psnr_shown", "copy_moved_psnr_shown", "teacher_forced_psnr_edge",
                "tokenizer_psnr_edge"):
        assert 0 < fd[key] < E.PSNR_CAP, key
    assert 0 < fd["teacher_forced_edge_share"] < 0.5  # explore moves: a row or column comes in most frames
    from envs.style import WEATHERS
    assert set(fd["teacher_forced_psnr_by_weather"]) == set(fd["tokenizer_psnr_by_weather"]) <= set(WEATHERS)
    by_weather = fd["tile_valid_by_weather"]  # one world: its weather's figures are the whole eval's
    assert len(by_weather) == 1 and set(by_weather) <= set(WEATHERS)
    assert list(by_weather.values())[0] == fd["tile_valid_by_horizon"]
    assert 0 <= fd["teacher_forced_camera_judged_share"] <= 1 and 0 <= fd["teacher_forced_blocked_share"] <= 1
    for key in ("seen_psnr_by_horizon", "seen_share_by_horizon", "tile_valid_by_horizon",
                "invented_share_by_horizon"):
        assert set(fd[key]) == {"1", "4"}
    assert fd["seen_share_by_horizon"]["1"] > 0.5  # one step: most of the start view is still in view
    assert fd["tile_valid_teacher"] > 0.9  # the teacher's own cells are tiles
    snaps = fd["tokenizer_psnr_snapped_heldout"] is not None
    assert (fd["tile_valid_snapped_by_horizon"] is not None) == snaps
    if snaps:  # the ceiling on the same frames, by horizon
        assert set(fd["tile_valid_snapped_by_horizon"]) == {"1", "4"}
        assert all(0 <= v <= 1 for v in fd["tile_valid_snapped_by_horizon"].values())
    assert 0 <= r["stability"]["tile_valid_share"] <= 1
    abl = r["ablations"]
    assert set(abl["memory_updates_off"]["revisit_psnr"]) == {"16"}
    assert abl["rope"]["rope"] == "absolute" and set(abl["rope"]["psnr_by_horizon"]) == {"1", "4"}
    assert set(abl["rope"]["revisit_psnr"]) == {"evolving"}
    assert len(abl["rope"]["psnr_curve"]) == 4
    assert abl["rope"]["stability"]["frames"] == 16 and 0 <= abl["rope"]["stability"]["player_visible_share"] <= 1
    h = r["heads"]
    assert h["worlds"] == 2 and h["frames"] == 16 and 0 < h["live_frames"] <= 32
    assert set(h["teacher_forced"]) == {"reward", "done"}
    assert set(h["free_running"]) == {"reward", "done", "reward_shown_share", "done_shown_share"}
    for run in ("teacher_forced", "free_running"):
        assert h[run]["reward"]["reward_mass"] >= 0
    assert set(h["teacher_shown"]) == {"reward_shown_share", "done_shown_share"}
    assert h["seeker"]["worlds"] == 2 and h["seeker"]["steps"] == 16
    assert 0 < h["seeker"]["dream"]["steps"] <= 32 and h["seeker"]["dream"]["reward_per_1000"] >= 0

    E.write_report(result, art, tmp_path / "report")
    for name in ("report.md", "fidelity.png", "strip.png", "revisit.png", "revisit_strip.png", "rope.png",
                 "adherence.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert "Revisit memory" in (tmp_path / "report" / "report.md").read_text()
    assert "Reward and done heads" in (tmp_path / "report" / "report.md").read_text()


def test_head_scores_count_matches_within_a_frame_and_unearned_reward():
    from envs.evaluate.heads import head_scores

    alive = np.ones((1, 10), bool)
    alive[0, 9] = False  # the episode ended before step 9
    paid = np.zeros((1, 10), np.float32)
    paid[0, [2, 6]] = 1.0  # the teacher paid two gems
    reward = np.zeros((1, 10), np.float32)
    reward[0, 3] = 0.9  # one frame late: matches the gem at 2
    reward[0, 8] = 0.6  # nothing near: unearned
    reward[0, 9] = 5.0  # after the end: not counted
    reward[0, 0] = -0.3  # negative values pay nothing
    end = np.zeros((1, 10), bool)
    end[0, 8] = True
    done = np.zeros((1, 10), np.float32)
    done[0, 8] = 0.7
    r = head_scores(reward, done, paid, end, alive)
    assert r["reward"]["precision"] == 0.5 and r["reward"]["recall"] == 0.5
    assert (r["reward"]["model_events"], r["reward"]["teacher_events"]) == (2, 2)
    assert abs(r["reward"]["unearned_share"] - 0.6 / 1.5) < 1e-6 and r["reward"]["teacher_reward"] == 2.0
    assert r["done"]["precision"] == 1.0 and r["done"]["recall"] == 1.0
    silent = head_scores(np.zeros_like(reward), np.zeros_like(done), paid, end, alive)
    assert silent["reward"]["precision"] is None and silent["reward"]["recall"] == 0.0
    assert silent["reward"]["unearned_share"] is None
    small = paid.copy()
    small[0, 8] = 0.1  # a small true reward there (Crafter's health): 0.1 of the 0.6 is earned
    assert abs(head_scores(reward, done, small, end, alive)["reward"]["unearned_share"] - 0.5 / 1.5) < 1e-6


def test_teacher_run_records_rewards_and_hazard_ends():
    eps = [E.teacher_run(E.EVAL_SEED_BASE + i, 200, E.Game(64, "tile"), slip_prob=1.0) for i in range(4)]
    assert all(e.rewards.shape == (200,) and set(np.unique(e.rewards)) <= {0.0, 1.0} for e in eps)
    assert any(e.terminated for e in eps)  # always walking into hazards ends some episodes
    assert all(e.terminated == (e.alive < 200) for e in eps)


def test_cli_eval_smoke_and_skip(checkpoint, tmp_path, capsys):
    from demos.cli import main

    out = tmp_path / "e.json"
    code = main(["eval", "--checkpoint", str(checkpoint), "--quick", "--no-progress", "--json", str(out),
                 "--skip", "revisit", "adherence", "stability", "ablations"])
    assert code == 0
    r = json.loads(out.read_text())
    assert set(r["psnr_by_horizon"]) == {"1", "4", "16"} and r["revisit_psnr"] is None and r["stable"] is None
    assert r["skipped"] == ["revisit", "adherence", "stability", "ablations"]
    assert r["ablations"] is None


@pytest.mark.parametrize("bad", ["missing", "no_weights", "corrupt"])
def test_cli_eval_bad_checkpoint_exits_2(checkpoint, tmp_path, capsys, bad):
    import shutil

    from demos.cli import main

    d = tmp_path / "ck"
    if bad != "missing":
        shutil.copytree(checkpoint, d)
        if bad == "no_weights":
            (d / "model.safetensors").unlink()
        else:
            (d / "model.safetensors").write_bytes(b"not a safetensors file")
    code = main(["eval", "--checkpoint", str(d), "--quick", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("echo-infinity eval: error:") and "\n" not in err and str(d) in err


@pytest.mark.parametrize("motion", ["smooth", "tile"])
def test_content_measures_on_the_teachers_own_frames(motion):
    """The true frames keep everything they showed, and their cells are real tiles; a flat
    patch of mean colour or a noise texture is not."""
    from envs.evaluate.content import seen_and_invented, tile_threshold, tile_validity

    ep = E.teacher_run(90_500, 24, E.Game(64, motion))
    r = seen_and_invented(ep.frames, ep.frames, ep.positions, 64, motion, lag=4)
    assert np.all(r["seen"][r["seen_share"] > 0] == E.PSNR_CAP)
    assert r["seen_share"][0] > 0.5 and np.all(np.diff(r["seen_share"]) <= 0.3)
    thr = tile_threshold(64)["threshold_db"]
    assert tile_validity(ep.frames, ep.positions, ep.style, 64, motion, thr).mean() > 0.9
    flat = np.broadcast_to(ep.frames.mean(axis=(1, 2), keepdims=True).astype(np.uint8), ep.frames.shape)
    assert tile_validity(flat, ep.positions, ep.style, 64, motion, thr).mean() < 0.1
    texture = np.random.default_rng(0).integers(0, 256, ep.frames.shape, dtype=np.uint8)  # what a collapse draws
    assert tile_validity(texture, ep.positions, ep.style, 64, motion, thr).mean() < 0.05


def test_teacher_forced_split_scores_what_the_previous_frame_showed_apart_from_the_edge():
    """A prediction that is the previous true frame moved with the camera (the edge left black)
    is exact over the pixels that frame showed and wrong on the edge a move brings in."""
    from envs.evaluate.content import reproject
    from envs.evaluate.fidelity import _teacher_forced_split

    ep = E.teacher_run(90_501, 12, E.Game(64, "tile"))
    T = 12
    pred = np.stack([reproject(ep.frames[t], ep.positions[t], ep.positions[t + 1], 64, "tile") for t in range(T)])
    alive = np.ones((1, T), bool)
    target = ep.frames[None, 1:]
    out = _teacher_forced_split([ep], pred[None], ep.frames[None], target, None, alive, E.Game(64, "tile"),
                                (E.psnr(pred[None], target), E.psnr(target, target)))
    assert out["teacher_forced_psnr_shown"] == E.PSNR_CAP == out["tokenizer_psnr_shown"] == out["copy_moved_psnr_shown"]
    assert out["teacher_forced_psnr_edge"] < 20 and out["tokenizer_psnr_edge"] == E.PSNR_CAP
    assert 0 < out["teacher_forced_edge_share"] < 0.3
    # every pixel but the edge is what a model can know; made exact there, only the edge's error stays
    assert out["tokenizer_psnr_known"] == E.PSNR_CAP and out["teacher_forced_psnr_edge"] < out["teacher_forced_psnr_known"]
    assert E.psnr(pred[None], target).mean() <= out["teacher_forced_psnr_known_exact"] < 40
    assert out["tokenizer_psnr_teacher_forced"] == E.PSNR_CAP
    w = ep.style.weather  # the whole frame, per weather: wrong on the edge, exact for the ceiling
    assert out["tokenizer_psnr_by_weather"] == {w: E.PSNR_CAP} and out["teacher_forced_psnr_by_weather"][w] < 40


def test_camera_agreement_tells_a_model_that_moves_from_one_that_stands_or_follows_the_key():
    """The true next frame agrees with the teacher's camera everywhere; a model that never moves
    agrees only on blocked moves (and standing still); one that moves the view whenever a move key
    is pressed, obstacle or not, agrees where the player walked and never where it was blocked."""
    from envs.evaluate.content import reproject
    from envs.evaluate.fidelity import _camera_follows
    from envs.tiles import BASE_TILE
    from world.actions import DOWN, LEFT, RIGHT, UP

    game = E.Game(64, "tile")
    eps = [E.teacher_run(s, 32, game) for s in (90_502, 90_503, 90_504)]
    true = np.stack([e.frames for e in eps])
    alive = np.ones((len(eps), 32), bool)
    exact = _camera_follows(eps, true[:, 1:], true, alive, game)
    assert exact["teacher_forced_camera_agrees"] == 1.0 and exact["teacher_forced_blocked_share"] > 0
    assert 0.3 < exact["teacher_forced_camera_judged_share"] <= 1
    still = _camera_follows(eps, true[:, :-1], true, alive, game)
    assert still["teacher_forced_camera_agrees_walked"] == 0 and still["teacher_forced_camera_agrees_blocked"] == 1
    assert still["teacher_forced_camera_blocked_frames"] > 0
    key = {UP: (0, -1), DOWN: (0, 1), LEFT: (-1, 0), RIGHT: (1, 0)}
    follows = np.stack([np.stack([reproject(e.frames[t], e.positions[t], tuple(
        p + BASE_TILE * d for p, d in zip(e.positions[t], key.get(int(e.actions[t]), (0, 0)))), 64, "tile")
        for t in range(32)]) for e in eps])
    moved = _camera_follows(eps, follows, true, alive, game)
    assert moved["teacher_forced_camera_agrees_walked"] > 0.9 and moved["teacher_forced_camera_agrees_blocked"] == 0


def test_object_share_tells_objects_from_bare_ground():
    """The census counts trees, rocks and gems as objects; a world painted over with its ground
    tile is all valid tiles and no objects (the collapse tile validity alone cannot see)."""
    from envs.evaluate.content import atlas_tiles, tile_census, tile_threshold, view_origin
    from envs.tiles import BASE_TILE

    ep = E.teacher_run(90_500, 24, E.Game(64, "tile"))
    thr = tile_threshold(64)["threshold_db"]
    tiles, is_object = atlas_tiles(ep.style, 64)
    assert (~is_object).sum() == 4 and is_object.sum() >= 4  # four ground variants, the sprites
    valid, objects = tile_census(ep.frames, ep.positions, ep.style, 64, "tile", thr)
    assert objects.mean() > 0.02 and np.all(objects <= valid)
    ground = np.tile(tiles[np.flatnonzero(~is_object)[0]], (9, 9, 1))  # one ground tile everywhere
    bare = np.stack([np.roll(ground, ((-vy) % BASE_TILE, (-vx) % BASE_TILE), axis=(0, 1))[:64, :64]
                     for vy, vx in (view_origin(p, "tile") for p in ep.positions)])
    valid, objects = tile_census(bare, ep.positions, ep.style, 64, "tile", thr)
    assert valid.mean() > 0.9 and objects.max() == 0


def test_shown_share_finds_the_gems_and_hazards_the_teacher_walked_onto():
    """On the teacher's own frames every gem pickup and hazard end comes where the frame showed a
    gem / hazard on the tile walked onto; a dream drawn all ground showed none of them."""
    from envs.evaluate.content import stepped_onto
    from envs.evaluate.heads import shown_share
    from envs.tiles import GEM, HAZARD

    eps = [E.teacher_run(E.EVAL_SEED_BASE + i, 120, E.Game(64, "tile"), slip_prob=0.3) for i in range(6)]
    onto = np.stack([stepped_onto(e.frames, e.actions, e.style, 64, "tile") for e in eps])
    alive = np.array([e.alive for e in eps])[:, None] > np.arange(120)[None]
    paid = np.stack([e.rewards for e in eps]) > 0.5
    ends = np.zeros_like(paid)
    for b, e in enumerate(eps):
        ends[b, e.alive - 1] = e.terminated
    assert paid.sum() >= 2 and ends.sum() >= 1
    assert shown_share(paid, onto, GEM, alive) == 1.0 and shown_share(ends, onto, HAZARD, alive) == 1.0
    assert shown_share(np.zeros_like(paid), onto, GEM, alive) is None
    still = np.stack([stepped_onto(np.repeat(e.frames[:1], 121, 0), e.actions, e.style, 64, "tile") for e in eps])
    assert shown_share(paid, still, GEM, alive) < 0.5  # a world that never changes shows no gems where they were
    with pytest.raises(ValueError, match="tile-step"):
        stepped_onto(eps[0].frames, eps[0].actions, eps[0].style, 64, "smooth")


def test_the_gem_seeker_walks_to_gems_and_the_teacher_pays_each_one():
    from envs.evaluate.content import atlas_classes
    from envs.evaluate.seeker import GemSeeker, _summary, _teacher
    from envs.tiles import GEM, GROUND
    from world.actions import DOWN, LEFT, RIGHT

    rec, _, _, styles = _teacher(E.Game(64, "tile"), [E.EVAL_SEED_BASE + i for i in range(4)], 100, 8)
    run = _summary(**rec)
    assert run["rewards"] >= 2 and run["paid_on_gem_share"] == 1.0 and run["gem_stepons_paid"] == 1.0
    tiles, cls = atlas_classes(styles[0], 64)
    ground, gem = tiles[np.flatnonzero(cls == GROUND)[0]], tiles[np.flatnonzero(cls == GEM)[0]]

    def gems_at(*cells):  # a ground field with gems at (row, column) cells; the player is at (4, 4)
        frame = np.tile(ground, (8, 8, 1))
        for r, c in cells:
            frame[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] = gem
        return frame

    agent = GemSeeker(styles[0], 64, 8, np.random.default_rng(0))
    assert agent.act(gems_at((4, 6))) == (RIGHT, False)
    assert agent.act(gems_at((4, 6), (4, 5))) == (RIGHT, True)  # the nearest, and it walks onto it
    assert agent.act(gems_at((4, 2))) == (LEFT, False)
    diagonal = gems_at((5, 6))
    assert agent.act(diagonal) == (RIGHT, False)  # the longer axis first
    agent.observe(diagonal, diagonal, RIGHT)  # the frame did not change: blocked that way
    assert agent.act(diagonal) == (DOWN, False)


def test_player_check_follows_the_tile_mode_sprite():
    ep = E.teacher_run(501, 8, E.Game(64, "tile"))
    assert np.all(E.player_psnr(ep.frames, ep.style, motion="tile") >= 40)
    assert np.all(E.player_psnr(ep.frames, ep.style, motion="smooth") < 30)  # 4 px off: not the sprite
