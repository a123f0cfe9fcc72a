"""RoPE recipes: temporal ids of [sink | memory | window | current] per frame."""

import pytest
import torch

from world.config import from_preset
from world.model import WorldModel
from world.rope import RopeRecipe, Rotary3D, apply_rope

# Small layout: S = 1 sink frame, Fm = 2 memory frames, W = 4 window frames
# (incl. the current one), chunk 1 -> F_max = 1 + 2 + 4 - 1 = 6.
S, FM, W = 1, 2, 4

# frame f -> (sink ids, memory ids, cached window ids oldest->newest, current id)
UNIFIED = {
    0: ([], [-5, -4], [], [0]),
    1: ([0], [-4, -3], [], [1]),
    2: ([0], [-3, -2], [1], [2]),
    3: ([0], [-2, -1], [1, 2], [3]),
    4: ([0], [-1, 0], [1, 2, 3], [4]),
    5: ([0], [0, 1], [2, 3, 4], [5]),
}
STEADY = ([0], [1, 2], [3, 4, 5], [6])  # from f = F_max = 6 on, forever
UNIFIED.update({f: STEADY for f in range(6, 41)})

ABSOLUTE = {
    0: ([], [-5, -4], [], [0]),
    3: ([0], [-2, -1], [1, 2], [3]),
    6: ([0], [1, 2], [3, 4, 5], [6]),
    7: ([0], [2, 3], [4, 5, 6], [7]),
    40: ([0], [35, 36], [37, 38, 39], [40]),
}

WINDOW_RELATIVE = {  # newest always at F_max (sink frames keep ids 0..S-1, also while current)
    0: ([], [1, 2], [], [0]),
    1: ([0], [1, 2], [], [6]),
    2: ([0], [1, 2], [5], [6]),
    4: ([0], [1, 2], [3, 4, 5], [6]),
    40: ([0], [1, 2], [3, 4, 5], [6]),
}


def _row(recipe, f):
    ids = recipe.layout(f)
    return ids.sink, ids.memory, ids.window, ids.current


def test_unified_relative_table_frames_0_to_40():
    recipe = RopeRecipe("unified_relative", S, FM, W)
    assert recipe.F_max == 6
    for f in range(41):
        assert _row(recipe, f) == UNIFIED[f], f"frame {f}"


@pytest.mark.parametrize("name,table", [("absolute", ABSOLUTE), ("window_relative", WINDOW_RELATIVE)])
def test_ablation_recipes(name, table):
    recipe = RopeRecipe(name, S, FM, W)
    for f, row in table.items():
        assert _row(recipe, f) == row, f"{name} frame {f}"


def test_chunked_layout():
    # chunk of 2 frames: both current frames sit at the top, the window below them
    recipe = RopeRecipe("unified_relative", 2, 2, 4)  # F_max = 7
    ids = recipe.layout(f=21, chunk=2)  # chunk = frames 20, 21; cached window = 18, 19
    assert (ids.sink, ids.memory, ids.window, ids.current) == ([0, 1], [2, 3], [4, 5], [6, 7])


def _micro(policy="evolving", rope="unified_relative"):
    return from_preset("tiny", tokenizer={"image_size": 16, "channels": [8]},
                       dit={"dim": 32, "depth": 2, "heads": 2},
                       memory={"policy": policy, "rope": rope, "window_frames": W, "sink_frames": S,
                               "memory_frames": FM, "memory_tokens_per_frame": 4})


@pytest.mark.parametrize("policy", ["evolving", "window"])
def test_streaming_cache_reads_recipe_ids(policy):
    """The ring buffer's physical slots get the ids of the table, whatever their order."""
    model = WorldModel(_micro(policy)).eval()
    recipe = model.rotary.recipe
    state = model.init_state(1)
    for f in range(12):
        ctx = model.prepare(state)  # the ids the streaming step rotates the cache with
        ids = sorted(ctx.slot_ids[0][ctx.slot_valid[0]].tolist())
        if policy == "evolving":  # sink + cached window ids, straight from the table
            want = UNIFIED[f][0] + UNIFIED[f][2]
        else:  # no sink: frame 0 is an ordinary window frame
            frames = torch.tensor([list(range(max(0, f - W + 1), f))], dtype=torch.long)
            want = recipe.frame_ids(torch.tensor([[f]]), frames)[0].tolist()
        assert ids == want, f"frame {f}: {ids} != {want}"
        assert ctx.memory_ids[0].tolist() == UNIFIED[f][1]
        model.step(state, torch.tensor([0]))


def test_rotation_is_relative():
    """q(id a) . k(id b) depends only on a - b (what makes cached pre-RoPE keys reusable)."""
    cfg = _micro()
    rot = Rotary3D(cfg, RopeRecipe("unified_relative", S, FM, W))
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 16, 16, generator=g)
    k = torch.randn(1, 1, 16, 16, generator=g)

    def score(a, b):
        cq, sq = rot.cos_sin(torch.tensor([[a]]))
        ck, sk = rot.cos_sin(torch.tensor([[b]]))
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum(-1)

    assert torch.allclose(score(5, 2), score(3, 0), atol=1e-5)
    assert not torch.allclose(score(5, 2), score(5, 0), atol=1e-3)
