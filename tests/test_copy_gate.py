import pytest
import torch

from world import copy_gate
from world.copy_gate import DRAW
from world.config import from_preset
from world.model import WorldModel
from world.prev_frame import CENTRE

from .test_world_model import micro

LEFT = 3  # neighbour index of the token to the left (row-major 3x3, CENTRE = 4)


def frame(values, grid=3):
    """A grid x grid frame of 1-channel tokens [1, N, 1]."""
    return torch.tensor(values, dtype=torch.float32).view(1, grid * grid, 1)


def test_targets_pick_the_candidates_nearest_the_truth():
    prev = frame([0, 0, 0,
                  0, 5, 0,
                  0, 0, 0])  # a tree in the middle
    true = frame([0, 0, 0,
                  0, 0, 5,
                  0, 0, 0])[:, None]  # the camera moved: the tree is one token right
    drawn = torch.zeros_like(true)  # the DiT lost the tree: ground everywhere
    ok = copy_gate.targets(true, drawn, prev, 3, torch.tensor([True]))[0, 0]  # [N, 10]
    assert ok[5].nonzero().flatten().tolist() == [LEFT]  # only the tree's copy
    assert ok[0, CENTRE] and ok[0, DRAW] and not ok[0, 8]  # ground ties with ground, not with the tree
    assert not ok[0, 0]  # beyond the frame's edge is never a copy
    drawn_tree = drawn.clone()
    drawn_tree[0, 0, 5] = 5.0
    assert copy_gate.targets(true, drawn_tree, prev, 3, torch.tensor([True]))[0, 0, 5, DRAW]
    variant = drawn_tree.clone()
    variant[0, 0, 5] = 5.1  # a look-alike code of the tree (0.01 away): as right as the copy
    assert copy_gate.targets(true, variant, prev, 3, torch.tensor([True]))[0, 0, 5, [LEFT, DRAW]].all()
    first = copy_gate.targets(true, drawn, prev, 3, torch.tensor([False]))[0, 0]  # no previous frame
    assert first[:, DRAW].all() and not first[:, :DRAW].any()


def test_gate_loss_asks_each_choice_whether_it_is_right():
    correct = torch.zeros(2, 10, dtype=torch.bool)
    correct[0, [1, 4]] = True  # two neighbours tie
    correct[1, DRAW] = True
    sure = torch.where(correct, 20.0, -20.0)
    sure[0, 0] = float("-inf")  # beyond the frame's edge: not a choice, not scored
    assert float(copy_gate.gate_loss(sure, correct)) < 1e-6
    one = sure.clone()
    one[0, 1] = -20.0  # one of the two right copies called wrong: a loss, the choice still right
    assert float(copy_gate.gate_loss(one, correct)) > 1.0
    assert copy_gate.choose(one, 0.5).tolist() == [4, DRAW]
    assert float(copy_gate.gate_loss(torch.where(correct, -20.0, 20.0), correct)) > 10


def test_gate_loss_weighs_the_tokens_where_the_choice_matters():
    tie = torch.zeros(1, 10, dtype=torch.bool)
    tie[0, [4, DRAW]] = True  # copy and draw both right: the choice does not matter
    only_copy = torch.zeros(1, 10, dtype=torch.bool)
    only_copy[0, 4] = True
    unsure = torch.zeros(1, 10)  # p = 0.5 everywhere
    both = copy_gate.gate_loss(unsure.expand(2, 10), torch.cat([tie, only_copy]))
    assert float(both) == pytest.approx(float(copy_gate.gate_loss(unsure, tie)))  # same error per choice
    sure = torch.where(torch.cat([tie, only_copy]), 10.0, -10.0)
    sure[1] = 0.0  # right on the tie, unsure where it matters: the decisive token dominates
    w = copy_gate.DECISIVE_WEIGHT
    expected = w / (1 + w) * float(copy_gate.gate_loss(unsure, only_copy))
    assert float(copy_gate.gate_loss(sure, torch.cat([tie, only_copy]))) == pytest.approx(expected, rel=1e-3)


def test_gate_counts_score_what_the_gate_adds():
    correct = torch.zeros(4, 10, dtype=torch.bool)
    correct[0, 4] = True  # only a copy is right: copied right (fixed)
    correct[1, 4] = True  # only a copy is right: drawn (missed)
    correct[2, DRAW] = True  # only the draw is right: copied (wrong)
    correct[3, [4, DRAW]] = True  # both: drawn
    counts = copy_gate.gate_counts(torch.tensor([4, DRAW, 4, DRAW]), correct)
    assert {k: float(v) for k, v in counts.items()} == {"tokens": 4.0, "copy_only": 2.0, "fixed": 1.0,
                                                        "copied": 2.0, "wrong": 1.0}


def test_choose_and_apply_copy_exactly():
    prev = frame([1, 2, 3,
                  4, 5, 6,
                  7, 8, 9])
    drawn = torch.full((1, 1, 9, 1), 0.5)
    logits = torch.full((1, 1, 9, 10), -5.0)
    logits[..., LEFT] = 2.0  # every token: "the camera moved right, copy my left neighbour"
    logits[0, 0, 4, DRAW] = 3.0  # the centre draws: the drawn tile is likelier right
    choice = copy_gate.choose(logits, 0.5)
    assert choice[0, 0].tolist() == [LEFT, LEFT, LEFT, LEFT, DRAW, LEFT, LEFT, LEFT, LEFT]
    out = copy_gate.apply(choice, drawn, prev, 3)[0, 0, :, 0]
    # the left column has no left neighbour: apply would read zeros; the gate's logits forbid it
    assert out.tolist() == [0.0, 1.0, 2.0, 0.0, 0.5, 5.0, 0.0, 7.0, 8.0]
    assert copy_gate.choose(logits, 0.95)[0, 0].eq(DRAW).all()  # nothing that sure: all drawn
    gate = copy_gate.CopyGate(3, 1, 4)
    masked = gate(torch.zeros(1, 1, 9, 4), drawn, prev, drawn)
    assert torch.isinf(masked[0, 0, 0, :3]).all() and torch.isinf(masked[0, 0, 0, [0, 3, 6]]).all()
    assert torch.isfinite(masked[0, 0, 4]).all()


def gated(threshold=0.5, size=32):
    model = micro(dit={"prev_frame": True, "prediction": "x0", "copy_gate": True})
    cfg = model.cfg.replace(tokenizer={"codebook_size": size}, sampler={"snap": True, "copy_gate": threshold})
    return WorldModel(cfg).eval().randomize_(seed=1)


def copy_in_place(model):
    """Make the gate say "copy in place" for every token, whatever it reads."""
    last = model.dit.copy_gate.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-10.0)[CENTRE] = 10.0


def test_a_gate_that_copies_holds_the_world_exactly():
    model = gated()
    copy_in_place(model)
    state = model.init_state(1, seed=5)
    first = model.step_latents(state, torch.tensor([0]))[0]  # frame 0 has no previous frame: drawn
    assert not torch.equal(first[0, 0], torch.zeros_like(first[0, 0]))
    for a in (1, 4, 2):
        x0 = model.step_latents(state, torch.tensor([a]))[0]
        assert torch.equal(x0[0, 0], first[0, 0])  # every tile copied, code for code
    off = gated(threshold=1.5)  # above 1: the gate is off
    off.load_state_dict(model.state_dict())
    state = off.init_state(1, seed=5)
    frames = [off.step_latents(state, torch.tensor([a]))[0] for a in (0, 1)]
    assert not torch.equal(frames[0], frames[1])


def test_copy_gate_needs_the_snap():
    with pytest.raises(ValueError, match="dit.copy_gate"):
        from_preset("tiny", dit={"copy_gate": True}, sampler={"snap": False})
    with pytest.raises(ValueError, match="sampler.copy_gate"):
        gated(threshold=-0.1)


def test_graph_backends_copy_like_torch(tmp_path):
    """The step graphs hand the gate the pass's hidden states: eager graphs and onnxruntime draw
    the eager model's frames, copies included."""
    from engines.backend import EagerGraphBackend, TorchBackend
    from engines.registry import make_backend

    from .test_engines import assert_close, run_parity

    model = gated(threshold=0.0)
    with torch.no_grad():  # a gate that copies some tokens and draws others
        model.dit.copy_gate.net[-1].bias[CENTRE] = 2.0
    worst, state = run_parity(model, TorchBackend(model), EagerGraphBackend(model), frames=10)
    assert_close(worst)
    ort = make_backend("onnxruntime", model, 1, cache_dir=tmp_path / "onnx", warn=pytest.fail)
    worst, state = run_parity(model, TorchBackend(model), ort, frames=10)
    assert_close(worst)
