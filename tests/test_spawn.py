"""world/spawn.py: the collectibles new ground shows, counted from recordings and placed by place."""

import pytest
import torch

from world import tile_map
from world.config import from_preset
from world.spawn import Spawn, neighbour_pairs, place_uniform

from .test_tile_map import G, LEFT, RIGHT, moves, no_key, vec


def fitted() -> Spawn:
    """Codes 0..5 on a line; code 5 pays when walked onto; it lies next to code 0 in 1 of 4 pairs,
    never next to code 1."""
    book = torch.arange(6).float()[:, None] * 10
    walked = torch.tensor([5, 5, 5, 0, 1, 1])
    paid = torch.tensor([True, True, False, False, False, False])
    pairs = torch.zeros(6, 6, dtype=torch.long)
    pairs[0, 0], pairs[0, 5], pairs[1, 1] = 3, 1, 4
    return Spawn(6).fit(walked, paid, pairs, book)


def test_a_code_whose_steps_paid_is_placed_beside_the_tiles_it_lay_next_to():
    s = fitted()
    assert s.rate[0] == pytest.approx(0.25) and s.code[0] == 5  # one neighbour in four was the gem
    assert s.rate[1] == 0  # never beside one
    assert s.collectibles() == 1
    none = Spawn(6).fit(torch.tensor([0, 1]), torch.tensor([False, False]), torch.ones(6, 6, dtype=torch.long),
                        torch.arange(6).float()[:, None])
    assert (none.rate == 0).all() and none.collectibles() == 0  # a game that pays for no tile places nothing


def test_neighbour_pairs_counts_the_four_neighbours():
    frame = torch.zeros(1, 9, dtype=torch.long)
    frame[0, 4] = 1  # code 1 in the middle of a 3x3 grid of code 0
    pairs = neighbour_pairs(frame, 3, 2)
    assert pairs[0, 1] == 4 and pairs[1, 0] == 4 and pairs[1, 1] == 0
    assert pairs.sum() == 2 * 2 * 3 * 2  # 12 neighbouring pairs, each counted both ways


def test_a_place_draws_the_same_number_every_time_and_places_differ():
    pos = torch.stack(torch.meshgrid(torch.arange(-50, 50), torch.arange(-50, 50), indexing="ij"), -1).view(1, -1, 2)
    u = place_uniform(torch.tensor([7]), pos)
    assert torch.equal(u, place_uniform(torch.tensor([7]), pos))
    assert (u >= 0).all() and (u < 1).all() and abs(float(u.mean()) - 0.5) < 0.02
    assert abs(float((u < 0.1).float().mean()) - 0.1) < 0.02  # uniform enough for a rate of 10%
    assert not torch.equal(u, place_uniform(torch.tensor([8]), pos))  # another world, another draw
    grid = u.view(100, 100)
    assert abs(float(torch.corrcoef(torch.stack([grid[:, :-1].flatten(), grid[:, 1:].flatten()]))[0, 1])) < 0.05


def test_place_writes_only_unknown_new_tokens_at_their_rate():
    s = fitted()
    B, N = 1, 10_000
    held = torch.full((B, N), -1)
    held[0, :10] = 3  # the map knows these
    new = torch.ones(B, N, dtype=torch.bool)
    new[0, -10:] = False
    pos = torch.stack([torch.arange(N), torch.zeros(N, dtype=torch.long)], -1)[None]
    out = s.place(held, new, torch.zeros(B, N, dtype=torch.long), torch.tensor([1]), pos)
    assert torch.equal(out[0, :10], held[0, :10]) and (out[0, -10:] == -1).all()
    assert abs(float((out == 5).float().mean()) - 0.25) < 0.02 and set(out.unique().tolist()) == {-1, 3, 5}
    beside_1 = s.place(held, new, torch.ones(B, N, dtype=torch.long), torch.tensor([1]), pos)
    assert not (beside_1 == 5).any()


def test_entered_says_which_tokens_came_in_from_beyond_the_frame():
    maps = tile_map.empty(1)
    f0 = torch.arange(G * G)[None]
    centre = (G // 2) * G + G // 2
    before = maps["origin"].clone()
    tile_map.update(maps, vec(f0), f0, moves(RIGHT), no_key(), torch.zeros(1, dtype=torch.bool), G, [centre])
    new, pos = tile_map.entered(maps, before, torch.zeros(1, dtype=torch.bool), G, [centre])
    assert new.view(G, G)[:, -1].all() and new.sum() == G  # the right column, and not the tile the player left
    assert pos[0, 0].tolist() == [0, 1]  # the view moved one token right
    before = maps["origin"].clone()
    tile_map.update(maps, vec(f0), f0, moves(4), no_key(), torch.zeros(1, dtype=torch.bool), G, [centre])
    assert not tile_map.entered(maps, before, torch.zeros(1, dtype=torch.bool), G, [centre])[0].any()  # a still camera brings nothing in
    before = maps["origin"].clone()
    tile_map.update(maps, vec(f0), f0, moves(LEFT), no_key(), torch.ones(1, dtype=torch.bool), G, [centre])
    assert not tile_map.entered(maps, before, torch.ones(1, dtype=torch.bool), G, [centre])[0].any()  # a fresh map knows no move


def test_spawn_setting_is_checked():
    with pytest.raises(ValueError, match="game.spawn"):
        from_preset("tiny", game={"spawn": "yes"})
    with pytest.raises(ValueError, match="game.spawn"):
        from_preset("tiny", game={"spawn": True, "passability": True})  # no tile map
    from_preset("tiny", game={"spawn": True, "passability": True}, sampler={"tile_map": True})


def test_a_world_walking_into_new_ground_finds_the_collectibles_the_table_places():
    """With every rate at 1 each token a move brings in from beyond the frame becomes code 7;
    with every rate at 0 the world is what it was without the table."""
    from world import codebook
    from world.actions import RIGHT as RIGHT_KEY
    from world.model import WorldModel

    from .test_engines import micro

    model = micro(prev_frame=True, dit={"prediction": "x0", "prev_frame": True, "copy_gate": True})
    cfg = model.cfg.replace(tokenizer={"codebook_size": 32}, sampler={"snap": True, "copy_gate": 0.5, "tile_map": True},
                            game={"passability": True, "spawn": True})
    model = WorldModel(cfg).eval().randomize_(seed=1)

    def sevens(rate: float, model=model) -> int:
        with torch.no_grad():
            model.spawn.rate.fill_(rate)
            model.spawn.code.fill_(7)
        state, n = model.init_state(1, seed=5), 0
        for _ in range(12):
            x0 = model.step_latents(state, torch.tensor([RIGHT_KEY]))[0]
            n += int((codebook.nearest(x0[0, 0], model.tokenizer.codebook) == 7).sum())
        return n

    assert sevens(1.0) > sevens(0.0) + 10
    # game.spawn_on "entered" also places where the gate copied a neighbour into the new ground.
    everywhere = WorldModel(cfg.replace(game={"spawn_on": "entered"})).eval()
    everywhere.load_state_dict(model.state_dict())
    assert sevens(1.0, everywhere) > sevens(1.0) > sevens(0.0)
    with pytest.raises(ValueError, match="game.spawn_on"):
        from_preset("tiny", game={"spawn_on": "everywhere"})
