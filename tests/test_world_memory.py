"""Memory policies: constant cost per step, and the evolving memory's update rule."""

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from world.config import from_preset
from world.model import WorldModel

BOUNDED = ["window", "sink", "compress", "evolving"]


def micro(policy="evolving", **memory):
    mem = {"policy": policy, "window_frames": 4, "sink_frames": 1, "memory_frames": 2,
           "memory_tokens_per_frame": 4, "full_capacity": 64}
    mem.update(memory)
    cfg = from_preset("tiny", tokenizer={"image_size": 16, "channels": [8]},
                      dit={"dim": 32, "depth": 2, "heads": 2}, memory=mem)
    return WorldModel(cfg).eval()


def step_flops(model, state) -> int:
    # the math SDPA kernel decomposes into matmuls, so attention FLOPs are counted too
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.step(state, torch.zeros(state.batch, dtype=torch.long))
    return counter.get_total_flops()


def fast_forward(model, state, frames: int) -> None:
    """Relabel the cached frames as if `frames` more had been played.

    `frames` is a multiple of the ring length, so every window frame stays in
    the slot it would occupy after a real run of that length.
    """
    ring = model.policy.ring_frames
    assert frames % ring == 0
    sf = state.cache.slot_frame
    ring_slots = torch.arange(sf.shape[1]) >= model.policy.sink_frames
    sf[:, ring_slots] += frames
    state.frame += frames


@pytest.mark.parametrize("policy", BOUNDED)
def test_constant_cost_frame_50_vs_5000(policy):
    model = WorldModel(from_preset("tiny", memory={"policy": policy})).eval().randomize_(0)
    state = model.init_state(1)
    for _ in range(50):
        model.step(state, torch.tensor([1]))
    assert state.frame.item() == 50
    shapes_50, flops_50 = state.shapes(), step_flops(model, state)  # frame 50 -> 51
    ring = model.policy.ring_frames
    fast_forward(model, state, ring * math.ceil((5000 - 51) / ring))
    assert state.frame.item() >= 5000
    shapes_5000, flops_5000 = state.shapes(), step_flops(model, state)
    assert shapes_50 == shapes_5000
    assert flops_50 == flops_5000 > 0


def test_full_policy_cost_grows():
    model = micro("full")
    state = model.init_state(1)
    for _ in range(10):
        model.step(state, torch.tensor([0]))
    f10 = step_flops(model, state)
    for _ in range(30):
        model.step(state, torch.tensor([0]))
    assert step_flops(model, state) > f10


@pytest.mark.slow
@pytest.mark.parametrize("policy", BOUNDED)
def test_constant_cost_real_5000_steps(policy):
    model = micro(policy).randomize_(0)
    state = model.init_state(1)
    for _ in range(50):
        model.step(state, torch.tensor([1]))
    shapes_50, flops_50 = state.shapes(), step_flops(model, state)
    while state.frame.item() < 5000:
        model.step(state, torch.tensor([2]))
    assert state.shapes() == shapes_50
    assert step_flops(model, state) == flops_50
    assert torch.isfinite(state.cache.k).all()


# -- evolving memory -------------------------------------------------------------------

def test_gate_starts_near_0_88():
    model = micro()
    mem = model.policy
    q_old = mem.query_init[None]
    q_new = torch.randn_like(q_old)
    g = mem.gate_values(q_old, q_new)
    assert abs(g.mean().item() - 1 / (1 + math.exp(-2))) < 0.01
    assert (g - 0.8808).abs().max().item() < 0.05


def test_update_exactly_on_eviction_from_last_layer_pre_rope_kv():
    model = micro().randomize_(2)  # S = 1 sink, ring of 3 window frames
    state = model.init_state(1)
    captured = {}

    def grab(module, inputs, output):  # last block's qkv during a context pass
        captured["kv"] = output

    hook = model.dit.blocks[-1].qkv.register_forward_hook(grab)
    k_frame1 = None
    queries = [state.memory["queries"].clone()]
    for f in range(7):
        if f == 4:  # frame 4's context pass evicts frame 1 (oldest window frame) into memory
            slot = state.cache.slot_frame[0].tolist().index(1)
            k_ev = state.cache.k[:, :, :, slot].clone()  # [L, B, H, N, Dh]
            v_ev = state.cache.v[:, :, :, slot].clone()
            expected = model.policy.update({"queries": state.memory["queries"]}, k_ev, v_ev,
                                           torch.tensor([True]))["queries"]
        model.step(state, torch.tensor([f % 8]))
        queries.append(state.memory["queries"].clone())
        if f == 1:
            # the cache holds exactly the last layer's k projection of frame 1, unrotated
            D, H, Dh = 32, 2, 16
            k_proj = captured["kv"][0, :, D:2 * D].view(-1, H, Dh).transpose(0, 1)  # [H, N, Dh]
            k_frame1 = k_proj
            slot = state.cache.slot_frame[0].tolist().index(1)
            assert torch.equal(state.cache.k[-1, 0, :, slot], k_frame1)
    hook.remove()
    init = model.policy.query_init[None]
    for f in range(4):  # frames 0..3 fill sink + ring: no eviction, memory untouched
        assert torch.equal(queries[f + 1], init), f"memory changed at frame {f}"
    assert torch.allclose(queries[5], expected, atol=1e-6)
    assert not torch.allclose(queries[5], queries[4])
    assert not torch.allclose(queries[6], queries[5])  # evicts every frame from now on


def test_update_uses_only_last_layer():
    model = micro().randomize_(3)
    q = {"queries": model.policy.query_init[None].clone()}
    k = torch.randn(2, 1, 2, 16, 16)
    v = torch.randn(2, 1, 2, 16, 16)
    a = model.policy.update(q, k, v, torch.tensor([True]))["queries"]
    k2, v2 = k.clone(), v.clone()
    k2[0] += 5.0  # first layer changed: no effect
    v2[0] -= 5.0
    assert torch.equal(a, model.policy.update(q, k2, v2, torch.tensor([True]))["queries"])
    k2[-1] += 1.0
    assert not torch.equal(a, model.policy.update(q, k2, v2, torch.tensor([True]))["queries"])
    # no eviction -> no change
    assert torch.equal(model.policy.update(q, k, v, torch.tensor([False]))["queries"], q["queries"])


def test_reset_restores_query_init():
    model = micro().randomize_(4)
    state = model.init_state(2)
    for _ in range(8):
        model.step(state, torch.tensor([1, 2]))
    assert not torch.allclose(state.memory["queries"][0], model.policy.query_init)
    fresh = model.init_state(2)
    assert torch.equal(fresh.memory["queries"], model.policy.query_init[None].expand(2, -1, -1))
    model.reset_worlds(state, [0], seeds=[3])
    assert torch.equal(state.memory["queries"][0], model.policy.query_init)
    assert not torch.allclose(state.memory["queries"][1], model.policy.query_init)


@pytest.mark.parametrize("bptt,reaches", [(2, True), (1, False)])
def test_gradient_reaches_query_init_through_two_updates(bptt, reaches):
    model = micro(bptt_updates=bptt).randomize_(5).train()
    state = model.init_state(1)
    with torch.no_grad():  # frames 0..3 fill sink + window: no memory update yet
        for _ in range(4):
            model.step_latents(state, torch.tensor([1]))
    assert torch.equal(state.memory["queries"], model.policy.query_init[None])
    state.memory = model.policy.init_state(1)  # the same values, now attached to query_init
    assert state.updates_since_detach == 0
    for _ in range(2):  # frames 4 and 5 each evict one frame: two memory updates
        model.step_latents(state, torch.tensor([2]))
    assert state.updates_since_detach == (2 if bptt == 2 else 1)
    # keep only the memory path from the early frames to the late one
    state.cache.k, state.cache.v = state.cache.k.detach(), state.cache.v.detach()
    x0, reward, _ = model.step_latents(state, torch.tensor([3]))  # the late frame reads the memory
    loss = x0.square().mean() + reward.square().mean()
    loss.backward()
    for name in ("layers.0.to_q.weight", "layers.1.ffn.0.weight", "connector.0.weight", "to_k.weight"):
        grad = model.policy.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, f"no gradient to memory {name}"
    g = model.policy.query_init.grad
    if reaches:  # through update 2 and update 1 back to the initial queries
        assert g is not None and g.abs().sum() > 0
    else:  # bptt_updates=1 cut the graph before the second update
        assert g is None or g.abs().sum() == 0


def test_compress_memory_fills_fifo():
    model = micro("compress").randomize_(6)
    state = model.init_state(1)
    for f in range(7):
        model.step(state, torch.tensor([0]))
    # evictions happened at frames 4, 5, 6 (3 evictions), but there are only 2 slots
    assert state.memory["valid"].tolist() == [[True, True]]
