"""world/passability.py: which tiles stop a move, counted from recordings, and the camera it keeps."""

import json

import pytest
import torch

from world import codebook
from world.config import from_preset
from world.model import WorldModel, build_model
from world.passability import Passability, count, target_codes

from .test_engines import micro

NOOP, UP, DOWN, LEFT, RIGHT = range(5)  # the teacher's action slots


def test_the_table_pools_a_tile_with_its_look_alike_codes():
    book = torch.arange(8).float()[:, None] * 10  # 8 codes far apart on a line
    codes = torch.tensor([2, 2, 2, 6, 6])
    blocked = torch.tensor([True, True, True, False, False])
    table = Passability(8).fit(codes, blocked, book).blocked
    assert table[2] == pytest.approx(3 / 3.5)  # blocked every time (its pool: 2, 1, 3 and 0 or 4)
    assert table[3] > 0.5  # never walked onto: borrows its nearest code's odds
    assert table[6] == 0 and table[7] == 0  # walked onto freely, and its neighbour with it
    assert table[0] <= table[2]


def test_count_takes_the_code_walked_onto_and_whether_the_player_stayed():
    model = passable(gate=False)
    grid, player = model.cfg.tokenizer.grid_size, model.cfg.game.fixed_tokens(model.cfg.tokenizer.grid_size)[0]
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (1, 6, 16, 16, 3), generator=g, dtype=torch.uint8)
    clip = {"frames": frames,
            "actions": torch.tensor([[RIGHT, RIGHT, NOOP, UP, DOWN, RIGHT]]),
            "positions": torch.tensor([[[0, 0], [8, 0], [8, 0], [8, 0], [8, 0], [8, 8]]]),
            "terminated": torch.tensor([[0, 0, 0, 1, 0, 0]]),
            "rewards": torch.tensor([[1.0, 0, 0, 0, 0, 0]])}
    moves = [4, 1, 7, 3, 5, 4, 4, 4]
    codes, blocked, paid, ended, idx = count(model.tokenizer, clip, moves, player, grid)
    # steps 0 (walked), 1 (blocked), 3 (ended the episode), 4 (walked); NOOP and the clip's last
    # action (no next frame) are not counted
    # (the ended step's position did not change either: fit leaves it out of the blocking odds)
    assert blocked.tolist() == [False, True, True, False] and paid.tolist() == [True, False, False, False]
    assert ended.tolist() == [False, False, True, False]
    assert torch.equal(idx, codebook.nearest(model.tokenizer.encode(frames[0, [0, 1, 3, 4]]), model.tokenizer.codebook))
    assert torch.equal(codes, target_codes(idx, torch.tensor([5, 5, 1, 7]), player, grid))


def test_the_hazard_table_counts_the_steps_that_ended_and_they_say_nothing_about_blocking():
    book = torch.arange(8).float()[:, None] * 10
    codes = torch.tensor([2, 2, 2, 6, 6, 6])
    blocked = torch.tensor([False, False, True, False, False, False])  # the ended steps' positions say nothing
    ended = torch.tensor([True, True, True, False, False, False])
    table = Passability(8, hazards=True).fit(codes, blocked, book, ended)
    assert table.ends[2] == pytest.approx(3 / 3.5) and table.blocked[2] == 0
    assert table.ends[6] == 0 and Passability(8).ends is None
    prev = torch.tensor([[6, 2, 6]])  # a 1 x 3 strip: the player at token 1 never stands on an edge
    move = torch.tensor([[5, 3, 4]])  # RIGHT (onto 6), LEFT (onto 6), in place
    assert not table.hazard(prev, move, 1, 3).any()
    prev = torch.tensor([[2, 6, 2]])
    assert table.hazard(prev, move, 1, 3).tolist() == [[True, True, False]]
    table.blocked[2] = 1.0  # a tile that blocks is never walked into
    assert not table.hazard(prev, move, 1, 3).any()


def passable(gate: bool) -> WorldModel:
    model = micro(prev_frame=gate, dit={"prediction": "x0", **({"prev_frame": True, "copy_gate": True} if gate else {})})
    cfg = model.cfg.replace(tokenizer={"codebook_size": 32}, sampler={"snap": True, "copy_gate": 0.5},
                            game={"passability": True})
    return WorldModel(cfg).eval().randomize_(seed=1)


def step_after_a_wall(model: WorldModel, action: int, wall_blocks: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A world whose first frame has code 0 right of the player and code 1 left of it; code 0 blocks
    or not -> (the previous frame's codes [N, C], the next frame [N, C] after `action`)."""
    book, grid = model.tokenizer.codebook, model.cfg.tokenizer.grid_size
    player = model.cfg.game.fixed_tokens(grid)[0]
    state = model.init_state(1, seed=5)
    model.step_latents(state, torch.tensor([RIGHT]))  # no previous frame: drawn, nothing kept
    state.prev_clean[0, player + 1], state.prev_clean[0, player - 1] = book[0], book[1]
    with torch.no_grad():
        model.passability.blocked.zero_()[0] = float(wall_blocks)
    before = book[codebook.nearest(state.prev_clean, book)[0]]
    return before, model.step_latents(state, torch.tensor([action]))[0][0, 0]


@pytest.mark.parametrize("gate", [False, True])
def test_a_move_into_a_blocking_tile_keeps_the_camera(gate):
    """Code 0 right of the player blocks: RIGHT keeps every token but the player's exactly in place
    (without the table the same step changes the frame); LEFT and NOOP are as without the table."""
    model = passable(gate)
    others = torch.arange(model.cfg.tokenizer.tokens_per_frame) != model.cfg.game.fixed_tokens(
        model.cfg.tokenizer.grid_size)[0]
    before, kept = step_after_a_wall(model, RIGHT, wall_blocks=True)
    assert torch.equal(kept[others], before[others])
    _, slid = step_after_a_wall(model, RIGHT, wall_blocks=False)
    assert not torch.equal(slid[others], before[others])
    for action in (LEFT, NOOP):
        assert torch.equal(step_after_a_wall(model, action, True)[1], step_after_a_wall(model, action, False)[1])


def test_a_step_onto_a_hazard_ends_the_episode_whatever_the_head_says():
    """Code 0 right of the player ends episodes: RIGHT's done probability is 1, LEFT's the head's
    (as without the table), and the table changes no frame."""
    model = passable(gate=False)
    model = WorldModel(model.cfg.replace(game={"hazards": True})).eval().randomize_(seed=1)
    grid = model.cfg.tokenizer.grid_size
    player = model.cfg.game.fixed_tokens(grid)[0]
    book = model.tokenizer.codebook

    def done_after(action: int, hazard: bool) -> tuple[float, torch.Tensor]:
        state = model.init_state(1, seed=5)
        model.step(state, torch.tensor([RIGHT]))
        state.prev_clean[0, player + 1], state.prev_clean[0, player - 1] = book[0], book[1]
        with torch.no_grad():
            model.passability.ends.zero_()[0] = float(hazard)
        out = model.step(state, torch.tensor([action]))
        return float(out.done_prob[0]), out.frame

    assert done_after(RIGHT, True)[0] == pytest.approx(1.0)
    head, frame = done_after(RIGHT, False)
    assert head < 0.99 and torch.equal(frame, done_after(RIGHT, True)[1])
    assert done_after(LEFT, True)[0] == pytest.approx(done_after(LEFT, False)[0])
    with pytest.raises(ValueError, match="game.hazards"):
        from_preset("tiny", game={"hazards": True})  # no passability table to count it with


def test_without_the_table_nothing_is_kept_and_a_checkpoint_without_it_is_refused(tmp_path):
    model = passable(gate=False)
    assert set(model.state_dict()) - set(WorldModel(model.cfg.replace(game={"passability": False})).state_dict()) \
        == {"passability.blocked"}
    path = model.save(tmp_path / "ck")
    cfg = json.loads((path / "config.json").read_text())
    reloaded = WorldModel.load(path)
    assert torch.equal(reloaded.passability.blocked, model.passability.blocked)
    plain = WorldModel(model.cfg.replace(game={"passability": False}))
    plain.save(tmp_path / "plain")
    (tmp_path / "plain" / "config.json").write_text(json.dumps(cfg))  # says it has a table it lacks
    from world.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="passability.blocked"):
        WorldModel.load(tmp_path / "plain")


def test_passability_setting_is_checked():
    with pytest.raises(ValueError, match="game.passability"):
        from_preset("tiny", game={"passability": "yes"})
    with pytest.raises(ValueError, match="game.passability"):
        from_preset("tiny", game={"passability": True, "motion": "smooth"})
    with pytest.raises(ValueError, match="game.passability"):
        from_preset("tiny", tokenizer={"codebook_size": 0}, sampler={"snap": False}, game={"passability": True})


def test_cli_counts_a_recording_into_a_checkpoint(tmp_path, capsys):
    from demos.cli import main
    from envs.record import record_episodes

    data, ck, out = tmp_path / "data", tmp_path / "ck", tmp_path / "out"
    record_episodes("teacher", "explore", episodes=1, steps=60, out_dir=data, seed=3, progress=False, motion="tile")
    build_model("tiny", tokenizer={"codebook_size": 64}).randomize_(0).save(ck)
    assert main(["passability", "--checkpoint", str(ck), "--data", str(data), "--out", str(out), "--no-progress"]) == 0
    assert "move steps of 1 episodes" in capsys.readouterr().out
    model = WorldModel.load(out)
    assert model.cfg.game.passability and torch.isfinite(model.passability.blocked).all()
    assert ((model.passability.blocked >= 0) & (model.passability.blocked <= 1)).all()
    assert main(["passability", "--checkpoint", str(ck), "--data", str(data), "--out", str(out), "--spawn",
                 "--no-progress"]) == 0
    assert "collectible codes placed" in capsys.readouterr().out
    model = WorldModel.load(out)
    assert model.cfg.game.spawn and model.cfg.sampler.tile_map and not model.cfg.game.hazards
    assert ((model.spawn.rate >= 0) & (model.spawn.rate <= 1)).all() and (model.spawn.code >= 0).all()
    assert main(["passability", "--checkpoint", str(out), "--data", str(data), "--out", str(out), "--hazards",
                 "--no-progress"]) == 0
    assert "codes end one" in capsys.readouterr().out
    model = WorldModel.load(out)
    assert model.cfg.game.hazards and model.cfg.game.spawn  # the tables the checkpoint had stay
    assert model.cfg.game.spawn_on == "drawn"
    assert main(["passability", "--checkpoint", str(out), "--data", str(data), "--out", str(out), "--spawn",
                 "--spawn-on", "entered", "--no-progress"]) == 0
    assert WorldModel.load(out).cfg.game.spawn_on == "entered"
    assert main(["passability", "--checkpoint", str(ck), "--data", str(data), "--out", str(out),
                 "--spawn-on", "entered"]) == 2
    assert "--spawn-on needs --spawn" in capsys.readouterr().err
    assert ((model.passability.ends >= 0) & (model.passability.ends <= 1)).all()
    assert main(["passability", "--checkpoint", str(tmp_path / "nothing"), "--data", str(data),
                 "--out", str(out)]) == 2
    assert main(["passability", "--checkpoint", str(ck), "--data", str(tmp_path / "no_data"), "--out", str(out)]) == 2
    smooth = tmp_path / "smooth"
    build_model("tiny", game={"motion": "smooth"}).randomize_(0).save(smooth)
    assert main(["passability", "--checkpoint", str(smooth), "--data", str(data), "--out", str(out)]) == 2
    assert "game.passability" in capsys.readouterr().err
