"""envs/spawn_gain.py: the spawn gain fitted so a dream's new ground holds the teacher's gems."""

import numpy as np
import pytest
import torch

from envs import spawn_gain
from envs.spawn_gain import NewGround, _next_gain, calibrate, teacher_walks
from world.config import from_preset
from world.spawn import Spawn


def point(gain: float, ratio: float) -> dict:
    return {"gain": gain, "ratio": ratio}


def test_the_next_gain_is_proportional_then_a_power_law_through_two_points():
    assert _next_gain([point(1.0, 0.25)]) == pytest.approx(4.0)
    # pay ~ gain^0.5: from 0.25 at 1 and 0.5 at 4, ratio 1 needs gain 16
    assert _next_gain([point(1.0, 0.25), point(4.0, 0.5)]) == pytest.approx(16.0)
    assert _next_gain([point(1.0, 1.0)]) is None  # on target
    assert _next_gain([point(1.0, 0.5), point(2.0, 1.01)]) is None  # the next gain was measured already
    assert _next_gain([point(1.0, 0.0)]) == pytest.approx(4.0)  # nothing paid: look further out
    assert _next_gain([point(spawn_gain.MAX_GAIN, 0.0)]) is None
    assert _next_gain([point(1.0, 1e-6)]) == spawn_gain.MAX_GAIN  # bounded


def test_a_larger_gain_places_more_and_keeps_every_place_it_took():
    s = Spawn(4)
    s.rate.fill_(0.1)
    s.code.fill_(3)
    N = 20_000
    held, new = torch.full((1, N), -1), torch.ones(1, N, dtype=torch.bool)
    pos = torch.stack([torch.arange(N), torch.zeros(N, dtype=torch.long)], -1)[None]
    inward, seed = torch.zeros(1, N, dtype=torch.long), torch.tensor([4])
    one, three = (s.place(held, new, inward, seed, pos, gain) == 3 for gain in (1.0, 3.0))
    assert abs(float(one.float().mean()) - 0.1) < 0.01 and abs(float(three.float().mean()) - 0.3) < 0.015
    assert not (one & ~three).any()
    assert (s.place(held, new, inward, seed, pos, 100.0) == 3).all()  # a rate stays <= 1


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "3", True])
def test_the_gain_setting_is_checked(bad):
    with pytest.raises(ValueError, match="game.spawn_gain"):
        from_preset("tiny", game={"spawn_gain": bad})


def test_teacher_walks_mark_the_steps_outside_the_start_view():
    game = from_preset("tiny", game={"motion": "tile"}).game
    w = teacher_walks(game, 64, 8, walks=6, steps=40, seed_base=123)
    assert w.actions.shape == w.new.shape == w.paid.shape == (6, 40) and w.firsts.shape == (6, 64, 64, 3)
    assert not w.new[:, :4].any()  # four tile steps cannot leave an 8-tile view around the player
    assert w.new.any() and (w.new <= w.alive).all()
    assert len(w.captions) == len(w.styles) == len(w.seeds) == 6 and w.seeds[0] == 123
    assert w.places >= w.new.sum() and 0 <= w.gems < w.places
    again = teacher_walks(game, 64, 8, walks=6, steps=40, seed_base=123)
    assert np.array_equal(again.actions, w.actions) and again.gems == w.gems  # seeded


def test_new_ground_counts_each_place_outside_the_start_view_once_with_its_last_class():
    from envs.evaluate.content import atlas_classes
    from envs.style import Style
    from envs.tiles import GEM, GROUND

    style = Style("grassland", "noon", "clear")
    tiles, cls = atlas_classes(style, 64)
    gem, ground = tiles[list(cls).index(GEM)], tiles[list(cls).index(GROUND)]

    def frame(gem_cells):
        f = np.tile(ground, (8, 8, 1))
        for r, c in gem_cells:
            f[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] = gem
        return f

    g = NewGround(style, 64, 8)
    g.add(frame([(0, 0), (0, 7)]), 0, 0)  # the start view itself: nothing new
    assert g.count() == (0, 0)
    g.add(frame([(0, 7)]), 0, 1)  # one column right: column 7 is new ground, its top cell a gem
    assert g.count() == (8, 1)
    g.add(frame([]), 0, 1)  # seen again without the gem (picked up): the last class counts
    assert g.count() == (8, 0)
    g.add(frame([(4, 4)]), 0, 5)  # the player's cell is never counted
    assert g.count() == (8 + 4 * 8 - 1, 0)


def test_calibrate_finds_the_gain_that_matches_the_teacher(monkeypatch):
    """A dream whose new ground holds a third of the teacher's gem density at gain 1, in proportion
    to the gain: the calibration lands near 3 and leaves it in the config."""
    W, T = 200, 32
    walks = spawn_gain.Walks(actions=np.zeros((W, T), np.int64), alive=np.ones((W, T), bool),
                             new=np.ones((W, T), bool), paid=np.zeros((W, T), bool),
                             firsts=np.zeros((W, 64, 64, 3), np.uint8), captions=[""] * W, styles=[None] * W,
                             seeds=list(range(W)), places=30_000, gems=450)
    monkeypatch.setattr(spawn_gain, "teacher_walks", lambda *a, **k: walks)

    def dream(model, w, text, batch, progress=False):
        gems = int(np.random.default_rng(1).binomial(30_000, 0.005 * model.cfg.game.spawn_gain))
        return {"places": 30_000, "gems": gems, "density": gems / 30_000, "new_steps": 1, "paid": 0, "per_1000": 0.0}

    monkeypatch.setattr(spawn_gain, "dream_walks", dream)

    class Model:
        cfg = from_preset("tiny", game={"motion": "tile", "passability": True, "spawn": True},
                          sampler={"tile_map": True})
        spawn = object()

    fit = calibrate(Model(), text=None, walks=W, steps=T, iterations=3)
    assert 2.7 < fit["gain"] < 3.3 and Model.cfg.game.spawn_gain == fit["gain"]
    assert fit["points"][0]["gain"] == 1.0 and abs(np.log(fit["points"][-1]["ratio"])) < 0.1
    assert fit["teacher"]["density"] == pytest.approx(0.015)


def test_calibrate_refuses_what_it_cannot_measure(monkeypatch):
    class Model:
        cfg = from_preset("tiny", game={"motion": "tile"})
        spawn = None

    with pytest.raises(ValueError, match="game.spawn is off"):
        calibrate(Model(), None)
    Model.spawn = object()
    with pytest.raises(ValueError, match=">= 1"):
        calibrate(Model(), None, walks=0)
    empty = spawn_gain.Walks(np.zeros((2, 3), np.int64), np.ones((2, 3), bool), np.ones((2, 3), bool),
                             np.zeros((2, 3), bool), np.zeros((2, 64, 64, 3), np.uint8), ["", ""], [None] * 2, [0, 1],
                             places=10, gems=0)
    monkeypatch.setattr(spawn_gain, "teacher_walks", lambda *a, **k: empty)
    with pytest.raises(ValueError, match="showed no gem"):
        calibrate(Model(), None, walks=2, steps=3)


def test_cli_calibrates_the_gain_of_a_counted_table(tmp_path, monkeypatch, capsys):
    """The real dream path on a small random model; the teacher's walks stubbed to pay in new ground."""
    import json

    from demos.cli import main
    from envs.record import record_episodes
    from world.model import WorldModel, build_model

    data, ck, out, js = tmp_path / "data", tmp_path / "ck", tmp_path / "out", tmp_path / "cal.json"
    record_episodes("teacher", "explore", episodes=1, steps=60, out_dir=data, seed=3, progress=False, motion="tile")
    build_model("tiny", tokenizer={"codebook_size": 64}).randomize_(0).save(ck)
    args = ["passability", "--checkpoint", str(ck), "--data", str(data), "--out", str(out), "--no-progress",
            "--text-encoder", "hash", "--calibrate-spawn", "--calibrate-walks", "2", "--calibrate-steps", "3"]
    assert main(args) == 2  # no spawn table to calibrate
    assert "--calibrate-spawn needs a spawn table" in capsys.readouterr().err
    assert main([*args, "--spawn"]) == 2  # three keys show too little new ground to hold a gem
    assert "showed no gem" in capsys.readouterr().err
    real = teacher_walks

    def paying(*a, **k):
        w = real(*a, **k)
        w.places, w.gems = 100, 2
        return w

    monkeypatch.setattr(spawn_gain, "teacher_walks", paying)
    assert main([*args, "--spawn", "--calibration-json", str(js)]) == 0
    said = capsys.readouterr().out
    assert "2 of the teacher's 100 new-ground places held a gem" in said and "game.spawn_gain =" in said
    fit = json.loads(js.read_text())
    assert WorldModel.load(out).cfg.game.spawn_gain == fit["gain"] in [p["gain"] for p in fit["points"]]
    assert main([*args[:-4], "--spawn", "--calibrate-walks", "0"]) == 2
