import pytest
import torch

from world import tile_map
from world.config import from_preset
from world.copy_gate import DRAW
from world.tile_map import SIDE

from .test_copy_gate import gated

G = 8
RIGHT, LEFT, IN_PLACE = 5, 3, 4  # neighbour indices (row-major 3x3): the camera moved right / left / stayed


def moves(k, batch=1):
    """The copy gate's choices [B, N] of a frame that moved as neighbour k says, every token alike."""
    return torch.full((batch, G * G), k, dtype=torch.long)


def vec(codes):
    """Code indices [B, N] as 1-channel code vectors [B, N, 1] (distinct codes lie >= 1 apart)."""
    return codes[..., None].float()


def no_key(batch=1):
    """The key's move for each world: none (4), so the gate's vote decides."""
    return torch.full((batch,), IN_PLACE, dtype=torch.long)


def walk(maps, frames, ks, fresh=None, fixed=()):
    """Feed frames [B, N] (codes) with the gate's move before each next one -> the recalls."""
    out = []
    for prev, k in zip(frames, ks):
        f = torch.zeros(prev.shape[0], dtype=torch.bool) if fresh is None else fresh
        out.append(tile_map.update(maps, vec(prev), prev, moves(k, prev.shape[0]), no_key(prev.shape[0]), f, G, list(fixed)))
        fresh = None
    return out


def test_a_column_the_camera_left_comes_back_when_it_returns():
    maps = tile_map.empty(1)
    f0 = torch.arange(G * G)[None]  # every tile its own code
    f1 = torch.roll(f0.view(1, G, G), -1, 2).reshape(1, -1)  # moved right: column 7 is new world
    f1.view(1, G, G)[:, :, -1] = 1000
    r1, r2 = walk(maps, [f0, f1], [RIGHT, LEFT])
    assert (r1.view(G, G)[:, :-1] == -1).all() and (r1.view(G, G)[:, -1] == -1).all()  # nothing known yet
    back = r2.view(G, G)
    assert torch.equal(back[:, 0], f0.view(G, G)[:, 0])  # the column left behind, code for code
    assert (back[:, 1:] == -1).all()  # everything else is the copy gate's


def test_the_camera_follows_the_gate_where_the_frame_tells_and_the_key_where_it_does_not():
    textured = torch.arange(G * G)[None]
    uniform = torch.zeros(1, G * G, dtype=torch.long)  # a field of one tile: every move looks alike
    right, key_left = moves(RIGHT), torch.tensor([LEFT])
    assert tile_map.camera_move(right, vec(textured), G, key_left).tolist() == [RIGHT]  # the drawn frame decides
    assert tile_map.camera_move(right, vec(uniform), G, key_left).tolist() == [LEFT]  # nothing tells: the key
    assert tile_map.camera_move(moves(DRAW), vec(textured), G, key_left).tolist() == [LEFT]  # every token drawn
    # a player drawn in place on a uniform field is no evidence that the camera stood still
    player = uniform.clone()
    centre = (G // 2) * G + G // 2
    player[0, centre] = 7
    still = moves(RIGHT)
    still[0, centre - G - 1:centre - G + 2] = still[0, centre - 1:centre + 2] = still[0, centre + G - 1:centre + G + 2] = 4
    assert tile_map.camera_move(still, vec(player), G, key_left, [centre]).tolist() == [LEFT]
    assert tile_map.camera_move(still, vec(player), G, key_left).tolist() == [IN_PLACE]  # had it counted


def test_the_player_is_never_kept_and_a_still_camera_recalls_nothing():
    maps = tile_map.empty(1)
    f0 = torch.arange(G * G)[None]
    centre = (G // 2) * G + G // 2
    r = walk(maps, [f0, f0], [IN_PLACE, IN_PLACE], fixed=[centre])
    assert (r[0] == -1).all() and (r[1] == -1).all()  # no move: nothing comes into view
    written = maps["codes"][0, :G, :G].reshape(-1)  # the view at the world's origin
    assert written[centre] == -1 and torch.equal(written[:centre], f0[0, :centre])


def test_a_gem_the_player_stepped_on_does_not_come_back_when_it_steps_off():
    """The map once gave the tile back, and an agent farmed one gem by stepping on and off it."""
    maps = tile_map.empty(1)
    centre = (G // 2) * G + G // 2
    f0 = torch.arange(G * G)[None]
    f0[0, centre + 1] = 999  # a gem right of the player
    f1 = torch.roll(f0.view(1, G, G), -1, 2).reshape(1, -1)  # the player walked right onto it
    f1[0, centre] = 7  # the player, drawn over it
    r1, r2 = walk(maps, [f0, f1], [RIGHT, LEFT], fixed=[centre])
    assert torch.equal(r2.view(G, G)[:, 0], f0.view(G, G)[:, 0])  # walking back recalls the column left
    assert r2[0, centre + 1] == -1  # but not the gem: the player's place was forgotten
    assert 999 not in maps["codes"]


def test_worlds_keep_their_own_maps_and_a_fresh_one_starts_empty():
    maps = tile_map.empty(2)
    f0 = torch.stack([torch.arange(G * G), torch.arange(G * G) + 100])
    f1 = torch.roll(f0.view(2, G, G), -1, 2).reshape(2, -1)
    tile_map.update(maps, vec(f0), f0, moves(RIGHT, 2), no_key(2), torch.zeros(2, dtype=torch.bool), G, [])
    back = tile_map.update(maps, vec(f1), f1, moves(LEFT, 2), no_key(2), torch.tensor([False, True]), G, [])
    assert torch.equal(back[0].view(G, G)[:, 0], f0[0].view(G, G)[:, 0])
    assert (back[1] == -1).all() and (maps["codes"][1] == -1).all() and maps["origin"][1].tolist() == [0, 0]


def test_a_cell_written_for_another_place_is_not_recalled():
    """The map is SIDE tokens wide, modulo: after a walk of SIDE tokens a cell holds another place."""
    maps = tile_map.empty(1)
    f0 = torch.arange(G * G)[None]
    tile_map.update(maps, vec(f0), f0, moves(IN_PLACE), no_key(), torch.zeros(1, dtype=torch.bool), G, [])  # f0 at x 0..7
    maps["origin"][0, 1] = SIDE + 1  # walked SIDE + 1 tokens right
    back = tile_map.update(maps, vec(f0), f0, moves(LEFT), no_key(), torch.zeros(1, dtype=torch.bool), G, [])
    assert maps["origin"][0].tolist() == [0, SIDE]  # column 0 is world x = SIDE: cell 0, written for x = 0
    assert (back == -1).all()


def test_a_world_with_the_tile_map_walks_back_into_what_it_left():
    """A gated model told to copy the right neighbour, then the left one: the column it walks back
    into is the one it left, code for code, with the tile map, and drawn anew without. (That column
    is set to a code the model does not draw, so a draw cannot match it by chance.)"""
    for on in (False, True):
        model = gated()
        model.cfg = model.cfg.replace(sampler={"tile_map": on})
        book, g = model.tokenizer.codebook, model.cfg.tokenizer.grid_size
        last = model.dit.copy_gate.net[-1]
        state = model.init_state(1, seed=5)
        # drawn; the model's last action slot (beyond the game's 6 names) is a valid key here too
        first = model.step_latents(state, torch.tensor([model.cfg.dit.num_actions - 1]))[0][0, 0]  # [N, C]
        drawn = torch.cdist(book, first).min(1).values  # each code's distance to the frame's codes
        mark = book[drawn.argmax()]
        # a frame of varied codes, so the gate's vote reads the camera's move from the frame (a
        # random model may draw a uniform field, where only the key, here none, tells a move)
        others = torch.arange(len(book))[torch.arange(len(book)) != drawn.argmax()]
        state.prev_clean[0] = book[others[torch.arange(g * g) % len(others)]]
        left = torch.arange(0, g * g, g)  # column 0
        state.prev_clean[0, left] = mark
        for k in (RIGHT, LEFT):
            with torch.no_grad():
                last.weight.zero_()
                last.bias.fill_(-10.0)[k] = 10.0
            frame = model.step_latents(state, torch.tensor([0]))[0][0, 0]
        back = (frame[left] == mark).all(-1)
        assert bool(back.all()) if on else not bool(back.all())


def test_tile_map_setting_is_checked():
    with pytest.raises(ValueError, match="sampler.tile_map"):
        from_preset("tiny", sampler={"tile_map": "yes"})
