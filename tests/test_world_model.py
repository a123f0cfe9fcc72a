"""WorldModel: streaming vs parallel, snapshot/restore, batching, input validation."""

import json

import pytest
import torch

from world.config import from_preset
from world.model import WorldModel


def micro(policy="evolving", rope="unified_relative", chunk=1, prompt_mode="pooled", dit=None, **memory):
    """A model small enough to step hundreds of frames per second on CPU (16x16 frames, 16 tokens)."""
    mem = {"policy": policy, "rope": rope, "chunk_frames": chunk, "window_frames": 4 * chunk,
           "sink_frames": chunk, "memory_frames": 2, "memory_tokens_per_frame": 4, "full_capacity": 64}
    mem.update(memory)
    cfg = from_preset("tiny", tokenizer={"image_size": 16, "channels": [8]},
                      dit={"dim": 32, "depth": 2, "heads": 2, "prompt_mode": prompt_mode, "prompt_tokens": 4,
                           **(dit or {})},
                      memory=mem)
    return WorldModel(cfg).eval().randomize_(seed=1)


def stream_predictions(model, x_noisy, t, action, x_ctx):
    """Step-by-step: denoising pass of each chunk (its raw prediction), then its context pass writes the cache."""
    B, T = action.shape
    c = model.cfg.memory.chunk_frames
    state = model.init_state(B)
    out = []
    for f in range(0, T, c):
        sl = slice(f, f + c)
        ctx = model.prepare(state)
        v, _ = model.denoise(state, ctx, x_noisy[:, sl], t[:, sl], action[:, sl])
        out.append(v)
        model.commit(state, ctx, x_ctx[:, sl], action[:, sl], level=torch.zeros(B))  # as the parallel t_ctx
    return torch.cat(out, 1)


CASES = [("evolving", "unified_relative", 1), ("evolving", "unified_relative", 2),
         ("compress", "unified_relative", 1), ("sink", "absolute", 1), ("window", "unified_relative", 1),
         ("evolving", "window_relative", 1), ("full", "unified_relative", 1)]


@pytest.mark.parametrize("policy,rope,chunk", CASES)
def test_streaming_equals_parallel(policy, rope, chunk):
    torch.manual_seed(0)
    model = micro(policy, rope, chunk)
    tk = model.cfg.tokenizer
    T = model.policy.sink_frames + model.policy.ring_frames + chunk  # the longest clip that fits
    T = min(T, 8)
    B, N, C = 2, tk.tokens_per_frame, tk.token_dim
    x_ctx, x_noisy = torch.randn(B, T, N, C), torch.randn(B, T, N, C)
    t = torch.rand(B, T)
    action = torch.randint(0, model.cfg.dit.num_actions, (B, T))
    with torch.no_grad():
        v_par, _, _ = model.forward_parallel(x_noisy, t, action, x_ctx, 0.0)
        v_str = stream_predictions(model, x_noisy, t, action, x_ctx)
    assert v_par.abs().mean() > 1e-2  # not a vacuous comparison of zeros
    assert (v_par - v_str).abs().max().item() <= 1e-4


@pytest.mark.parametrize("policy,rope,chunk", [c for c in CASES if c[2] == 1][:3])
def test_single_stream_equals_streaming_its_own_noisy_frames(policy, rope, chunk):
    """Diffusion forcing (no clean copy): chunk b sees the earlier *noisy* chunks at their levels,
    which is streaming with each noisy chunk committed as context at its level."""
    torch.manual_seed(0)
    model = micro(policy, rope, chunk)
    tk = model.cfg.tokenizer
    T = min(model.policy.sink_frames + model.policy.ring_frames + chunk, 8)
    B, N, C = 2, tk.tokens_per_frame, tk.token_dim
    x, t = torch.randn(B, T, N, C), torch.rand(B, T)
    action = torch.randint(0, model.cfg.dit.num_actions, (B, T))
    with torch.no_grad():
        par = model.forward_parallel(x, t, action, None)[0]
        state, out = model.init_state(B), []
        for f in range(0, T, chunk):
            sl = slice(f, f + chunk)
            ctx = model.prepare(state)
            out.append(model.denoise(state, ctx, x[:, sl], t[:, sl], action[:, sl])[0])
            model.commit(state, ctx, x[:, sl], action[:, sl], level=t[:, f + chunk - 1])
    assert par.abs().mean() > 1e-2
    assert (par - torch.cat(out, 1)).abs().max().item() <= 1e-4


def test_clean_copy_streaming_equals_parallel():
    """dit.prev_copy_clean: the copy path reads the context frame before its noise; the
    parallel path's x_clean and the streaming commit's `clean` are the same input."""
    torch.manual_seed(0)
    model = micro()
    model.cfg.dit.prev_copy_clean = model.dit.copy_clean = True
    tk = model.cfg.tokenizer
    B, T, N, C = 2, 5, tk.tokens_per_frame, tk.token_dim  # sink + window: no eviction
    x_clean, x_noisy, t = torch.randn(B, T, N, C), torch.randn(B, T, N, C), torch.rand(B, T)
    t_ctx = torch.rand(B, T) * 0.2
    x_ctx = (1 - t_ctx[..., None, None]) * x_clean + t_ctx[..., None, None] * torch.randn(B, T, N, C)
    action = torch.randint(0, model.cfg.dit.num_actions, (B, T))
    with torch.no_grad():
        par = model.forward_parallel(x_noisy, t, action, x_ctx, t_ctx, x_clean=x_clean)[0]
        noised_copy = model.forward_parallel(x_noisy, t, action, x_ctx, t_ctx)[0]
        state, out = model.init_state(B), []
        for f in range(T):
            ctx = model.prepare(state)
            out.append(model.denoise(state, ctx, x_noisy[:, f:f + 1], t[:, f:f + 1], action[:, f:f + 1])[0])
            model.commit(state, ctx, x_ctx[:, f:f + 1], action[:, f:f + 1], level=t_ctx[:, f], clean=x_clean[:, f:f + 1])
    assert (par - torch.cat(out, 1)).abs().max().item() <= 1e-4
    assert (par - noised_copy)[:, 1:].abs().max().item() > 1e-3  # the copy really reads the clean frame
    assert torch.equal(state.prev_clean, x_clean[:, -1])
    assert (state.cache.clean == x_clean[:, -1, None]).all(3).all(2).any(1).all()  # a slot keeps it for recache


def test_shift_copy_moves_whole_frame_and_streams_like_parallel():
    """dit.prev_shift: the copy is the previous clean frame moved by one shift for the whole
    frame, the true one where training gives it, else the head's argmax (streaming = parallel)."""
    from world.prev_frame import neighbourhood

    torch.manual_seed(0)
    model = micro(dit={"prev_copy_clean": True, "prev_shift": True})
    with torch.no_grad():
        model.dit.prev.keep_head.bias.fill_(-1e4)  # no token keeps its place: the copy is the moved frame
    tk = model.cfg.tokenizer
    B, T, N, C = 2, 5, tk.tokens_per_frame, tk.token_dim
    x_clean, x_noisy, t = torch.randn(B, T, N, C), torch.randn(B, T, N, C), torch.rand(B, T)
    action = torch.randint(0, model.cfg.dit.num_actions, (B, T))
    true = torch.tensor([[-1, 5, 5, 1, 4], [-1, 3, 7, 4, 4]])  # 5: the camera moved right one token
    with torch.no_grad():
        _, _, _, copy, logits = model.forward_parallel(x_noisy, t, action, x_clean, 0.0, x_clean=x_clean,
                                                       with_copy=True, shift=true)
        nb = neighbourhood(x_clean, tk.grid_size)  # [B, T, N, 9, C] (frame f's own neighbours)
        for b in range(B):
            for f in range(1, T):
                assert torch.equal(copy[b, f], nb[b, f - 1, :, int(true[b, f])])
        assert logits.shape == (B, T, 9)
        par = model.forward_parallel(x_noisy, t, action, x_clean, 0.0, x_clean=x_clean)[0]  # argmax shifts
        state, out = model.init_state(B), []
        for f in range(T):
            ctx = model.prepare(state)
            out.append(model.denoise(state, ctx, x_noisy[:, f:f + 1], t[:, f:f + 1], action[:, f:f + 1])[0])
            model.commit(state, ctx, x_clean[:, f:f + 1], action[:, f:f + 1], level=torch.zeros(B))
    assert (par - torch.cat(out, 1)).abs().max().item() <= 1e-4


def test_player_surroundings_enter_per_action_and_stream_like_parallel():
    """dit.player_surroundings: zero-initialised it changes nothing; the map of the action
    taken is the one read; streaming = parallel with it on."""
    torch.manual_seed(0)
    model = micro(dit={"player_surroundings": True})
    plain = micro()
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and unexpected == ["dit.surround"]
    tk = model.cfg.tokenizer
    B, T, N, C = 2, 5, tk.tokens_per_frame, tk.token_dim
    x_ctx, x_noisy, t = torch.randn(B, T, N, C), torch.randn(B, T, N, C), torch.rand(B, T)
    up, right = torch.full((B, T), 1), torch.full((B, T), 4)
    run = lambda m, a: m.forward_parallel(x_noisy, t, a, x_ctx, 0.0)[0]  # noqa: E731
    with torch.no_grad():
        model.dit.surround.zero_()
        assert torch.equal(run(model, up), run(plain, up))  # a warm start draws what it drew
        model.dit.surround[4].normal_(0, 0.1)  # only RIGHT reads the surroundings
        assert torch.equal(run(model, up), run(plain, up))
        assert (run(model, right) - run(plain, right)).abs().max() > 1e-3
        v_str = stream_predictions(model, x_noisy, t, right, x_ctx)
    assert (run(model, right) - v_str).abs().max().item() <= 1e-4
    with pytest.raises(ValueError, match="player_surroundings"):
        from_preset("tiny", dit={"prev_frame": False, "prediction": "velocity", "player_surroundings": True}).validate()


def test_shift_labels_follow_the_camera():
    from world.prev_frame import CENTRE, shift_labels

    px = 8.0  # base pixels a token spans
    pos = torch.tensor([[[0, 0], [8, 0], [8, 8], [8, 8], [10, 8], [100, 8]]])  # (x, y)
    assert shift_labels(pos, 1, px).tolist() == [[-1, 5, 7, CENTRE, -1, -1]]  # right, down, still, smooth, a jump
    assert shift_labels(pos, 2, px).tolist() == [[-1, -1, 7, 7, -1, -1]]  # chunk 2 reads frame 1 for frames 2-3


def test_parallel_is_causal():
    """Changing a later context frame must not change earlier predictions."""
    model = micro()
    B, T, N, C = 1, 5, 16, 32
    x_ctx, x_noisy, t = torch.randn(B, T, N, C), torch.randn(B, T, N, C), torch.rand(B, T)
    a = torch.zeros(B, T, dtype=torch.long)
    with torch.no_grad():
        v1 = model.forward_parallel(x_noisy, t, a, x_ctx)[0]
        x_ctx2 = x_ctx.clone()
        x_ctx2[:, 3] += 1.0
        v2 = model.forward_parallel(x_noisy, t, a, x_ctx2)[0]
    assert torch.equal(v1[:, :4], v2[:, :4])
    assert not torch.allclose(v1[:, 4], v2[:, 4])


def _rollout(model, state, actions):
    frames, lat = [], []
    for a in actions:
        with torch.no_grad():
            x0, _, _ = model.step_latents(state, a)
        lat.append(x0)
        frames.append(model.tokenizer.decode(x0.flatten(0, 1)))
    return torch.stack(lat), torch.stack(frames)


@pytest.mark.parametrize("policy", ["evolving", "compress", "sink"])
def test_snapshot_restore_continue(policy):
    model = micro(policy)
    g = torch.Generator().manual_seed(3)
    actions = [torch.randint(0, 8, (2,), generator=g) for _ in range(20)]
    state = model.init_state(2, seed=[5, 6])
    _rollout(model, state, actions[:9])  # past the first evictions
    snap = model.snapshot(state)
    lat_a, frames_a = _rollout(model, state, actions[9:])
    restored = model.restore(snap)
    lat_b, frames_b = _rollout(model, restored, actions[9:])
    assert torch.equal(lat_a, lat_b)
    assert torch.equal(frames_a, frames_b)
    assert set(snap) == set(model.snapshot(restored))


def test_snapshot_has_fixed_size():
    model = micro()
    state = model.init_state(1)
    size = lambda s: sum(v.numel() * v.element_size() for v in s.values())
    first = size(model.snapshot(state))
    for _ in range(12):
        model.step(state, torch.tensor([1]))
    assert size(model.snapshot(state)) == first


def test_batch_equals_single_worlds():
    model = micro("evolving")
    B = 3
    g = torch.Generator().manual_seed(4)
    actions = [torch.randint(0, 8, (B,), generator=g) for _ in range(10)]
    batch_state = model.init_state(B, seed=[10, 11, 12])
    lat_b, frames_b = _rollout(model, batch_state, actions)
    for b in range(B):
        single = model.init_state(1, seed=[10 + b])
        lat_1, frames_1 = _rollout(model, single, [a[b:b + 1] for a in actions])
        assert (lat_b[:, b] - lat_1[:, 0]).abs().max().item() <= 1e-5
        assert (frames_b[:, b].int() - frames_1[:, 0].int()).abs().max().item() <= 1


@pytest.mark.parametrize("policy", ["evolving", "compress", "sink"])
def test_worlds_with_different_frame_indices(policy):
    """A world reset mid-batch restarts from frame 0 while the others continue, whatever the
    layout of the memory's tensors (compress keeps [L, B, ...] K/V: batch on axis 1)."""
    model = micro(policy)
    state, kept = model.init_state(3, seed=[0, 1, 2]), model.init_state(3, seed=[0, 1, 2])
    for _ in range(7):  # past the window: memory holds evicted frames
        model.step(state, torch.tensor([1, 2, 4]))
        model.step(kept, torch.tensor([1, 2, 4]))
    model.reset_worlds(state, [1], seeds=[9])
    assert state.frame.tolist() == [7, 0, 7]
    fresh = model.init_state(1, seed=[9])
    for key, value in fresh.memory.items():
        axis = 1 if key in model.policy.layer_major else 0
        assert torch.equal(state.memory[key].select(axis, 1), value.select(axis, 0))
    lat_b, _ = _rollout(model, state, [torch.tensor([3, 3, 3])] * 6)
    lat_1, _ = _rollout(model, fresh, [torch.tensor([3])] * 6)
    lat_k, _ = _rollout(model, kept, [torch.tensor([3, 3, 3])] * 6)
    assert (lat_b[:, 1] - lat_1[:, 0]).abs().max().item() <= 1e-5
    assert (lat_b[:, [0, 2]] - lat_k[:, [0, 2]]).abs().max().item() <= 1e-5  # the others go on untouched


def test_step_outputs():
    model = micro()
    state = model.init_state(2)
    out = model.step(state, torch.tensor([0, 7]))
    frame, reward, done = out
    assert frame.dtype == torch.uint8 and frame.shape == (2, 16, 16, 3)
    assert reward.shape == (2,) and done.shape == (2,)
    assert ((done >= 0) & (done <= 1)).all()


def test_centre_heads_read_the_players_tile_and_pay_whole_pickups():
    model = micro(dit={"outcome_heads": "centre"})
    N, D = model.cfg.tokenizer.tokens_per_frame, model.cfg.dit.dim
    g = model.cfg.tokenizer.grid_size
    hidden = torch.zeros(1, 1, N, D)
    vec = torch.randn(D)
    at_centre, in_corner = hidden.clone(), hidden.clone()
    at_centre[0, 0, (g // 2) * g + g // 2], in_corner[0, 0, 0] = vec, vec  # the same mean, another place
    r_c, d_c = model.dit.heads(at_centre)
    r_k, d_k = model.dit.heads(in_corner)
    assert not torch.allclose(r_c, r_k) and not torch.allclose(d_c, d_k)
    reward, done = model.outcome(torch.tensor([-0.3, 0.2]), torch.tensor([0.0, 0.0]))
    assert reward.tolist() == [0.0, 1.0] and done.tolist() == [0.5, 0.5]
    out = model.step(model.init_state(2), torch.tensor([0, 7]))
    assert set(out.reward.tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="outcome_heads"):
        micro(dit={"outcome_heads": "player"})
    # Crafter's player stands at row 3, column 4 of the 8x8 grid, not at the centre
    cfg = from_preset("crafter-tiny", dit={"dim": 32, "depth": 1, "heads": 2, "outcome_heads": "centre"})
    assert WorldModel(cfg).dit.centre == [r * 8 + c for r in (2, 3, 4) for c in (3, 4, 5)]


def test_first_frame_and_prompt_change():
    model = micro(prompt_mode="cross_attention")
    first = torch.randint(0, 256, (1, 16, 16, 3), dtype=torch.uint8)
    state = model.init_state(1, first_frame=first)
    assert state.frame.tolist() == [1]
    a = model.step(state, torch.tensor([1])).frame
    model.set_prompt(state, torch.randn(384))
    b = model.step(state, torch.tensor([1])).frame
    assert a.shape == b.shape


@pytest.mark.parametrize("policy,chunk", [("evolving", 1), ("evolving", 2), ("compress", 1), ("full", 1)])
def test_recache_reproduces_the_cache(policy, chunk):
    """Before the first eviction a re-cache under the same prompt gives back the cache's K/V:
    the pass sees exactly what each frame's own context pass saw."""
    model = micro(policy, chunk=chunk)
    state = model.init_state(2, prompt=torch.randn(2, model.cfg.dit.prompt_dim), seed=[1, 2])
    for _ in range(4):  # fills sink + ring (4 chunks), no eviction yet
        model.step(state, torch.randint(0, 8, (2, chunk)) if chunk > 1 else torch.tensor([1, 5]))
    k, v = state.cache.k.clone(), state.cache.v.clone()
    model.recache(state)
    assert k.abs().mean() > 1e-2
    assert (state.cache.k - k).abs().max().item() <= 1e-4
    assert (state.cache.v - v).abs().max().item() <= 1e-4


def test_prompt_switch_recaches_only_the_changed_world():
    model = micro("evolving")
    P = model.cfg.dit.prompt_dim
    prompts = torch.randn(2, P)
    state = model.init_state(2, prompt=prompts, seed=[1, 2])
    for _ in range(9):  # past the first evictions
        model.step(state, torch.tensor([1, 2]))
    k = state.cache.k.clone()
    assert model.set_prompt(state, prompts.clone()) == []  # nothing changed: nothing re-cached
    assert torch.equal(state.cache.k, k)
    new = prompts.clone()
    new[1] = torch.randn(P)
    assert model.set_prompt(state, new) == [1]
    assert torch.equal(state.cache.k[:, 0], k[:, 0])  # world 0 untouched
    assert (state.cache.k[:, 1] - k[:, 1]).abs().max() > 1e-3
    assert torch.isfinite(state.cache.k).all()
    model.step(state, torch.tensor([1, 2]))  # and the worlds go on
    model.set_prompt(state, new, recache=False)
    with pytest.raises(ValueError, match=r"worlds must be in \[0, 2\)"):
        model.recache(state, [2])


# -- bad input ---------------------------------------------------------------------

def test_bad_actions():
    model = micro()
    state = model.init_state(2)
    with pytest.raises(ValueError, match=r"action values must be in \[0, 7\]"):
        model.step(state, torch.tensor([0, 8]))
    with pytest.raises(ValueError, match=r"action values must be in"):
        model.step(state, torch.tensor([-1, 0]))
    with pytest.raises(TypeError, match="int64"):
        model.step(state, torch.tensor([0, 1], dtype=torch.int32))
    with pytest.raises(TypeError, match="int64"):
        model.step(state, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        model.step(state, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model.step(state, [0, 1])
    assert state.frame.tolist() == [0, 0]  # nothing advanced


def test_bad_frames():
    model = micro()
    with pytest.raises(TypeError, match="uint8"):
        model.init_state(1, first_frame=torch.zeros(1, 16, 16, 3))
    with pytest.raises(ValueError, match=r"shape \[B, 16, 16, 3\]"):
        model.init_state(1, first_frame=torch.zeros(1, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape"):
        model.tokenizer.encode(torch.zeros(16, 16, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="prompt"):
        model.init_state(1, prompt=torch.zeros(100))


def test_save_load_roundtrip_and_mismatch(tmp_path):
    model = micro()
    model.save(tmp_path / "ck")
    loaded = WorldModel.load(tmp_path / "ck")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    # config beside the weights edited to another width -> clear shape report
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    cfg["dit"]["dim"] = 64
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not match the model config.*shape mismatch"):
        WorldModel.load(tmp_path / "ck")
    # a sink-policy checkpoint loaded as evolving -> missing memory weights
    micro("sink").save(tmp_path / "sink")
    with pytest.raises(ValueError, match="policy 'evolving'.*missing"):
        WorldModel.load(tmp_path / "sink", config=micro("evolving").cfg)
    # unknown config key -> named in the error
    cfg["dit"]["dim"] = 32
    cfg["dit"]["dimm"] = 32
    (tmp_path / "ck" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="dit.dimm"):
        WorldModel.load(tmp_path / "ck")


def test_loading_never_unpickles(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    (tmp_path / "config.json").write_text(json.dumps(micro().cfg.to_dict()))
    with pytest.raises(Exception) as err:
        WorldModel.load(tmp_path)
    assert "pickle" not in str(err.value).replace(str(tmp_path), "").lower()  # the path names this test


def test_stage1_loss_trains():
    from world.train import Stage1Loss, TrainConfig

    model = micro().train()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 5, 16, 32, generator=g)
    a = torch.randint(0, 8, (2, 5), generator=g)
    zeros = torch.zeros(2, 5)
    stage1 = Stage1Loss(model, TrainConfig(context_noise_max=0.0))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = stage1(x0, a, zeros, zeros, None, torch.Generator().manual_seed(1))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_clock_reads_each_frames_index_since_reset_in_training_and_streaming():
    """dit.clock: a training clip that starts at frame s of its episode sees the clock a world
    streamed from reset shows at that frame (parallel path = stream path with the clip's
    offset), the clock changes the prediction, and a zero clock leaves a model as it was."""
    from world.train import clip_context

    torch.manual_seed(0)
    model = micro(dit={"clock": True})
    with torch.no_grad():
        model.dit.clock.phase.weight.normal_(std=0.1)
    tk = model.cfg.tokenizer
    B, T, N, C = 2, 5, tk.tokens_per_frame, tk.token_dim
    x_noisy, x_ctx, t = torch.randn(B, T, N, C), torch.randn(B, T, N, C), torch.rand(B, T)
    action = torch.randint(0, model.cfg.dit.num_actions, (B, T))
    start = torch.tensor([0, 37])
    with torch.no_grad():
        par = model.forward_parallel(x_noisy, t, action, x_ctx, 0.0, start=start)[0]
        from_zero = model.forward_parallel(x_noisy, t, action, x_ctx, 0.0)[0]
        state, out = model.init_state(B), []
        for f in range(T):
            ctx = clip_context(model, state, start)
            out.append(model.denoise(state, ctx, x_noisy[:, f:f + 1], t[:, f:f + 1], action[:, f:f + 1])[0])
            model.commit(state, ctx, x_ctx[:, f:f + 1], action[:, f:f + 1], level=torch.zeros(B))
    assert (par - torch.cat(out, 1)).abs().max().item() <= 1e-4
    assert torch.equal(par[0], from_zero[0]) and (par[1] - from_zero[1]).abs().max().item() > 1e-3

    without = micro()
    with torch.no_grad():
        for p in model.dit.clock.parameters():
            p.zero_()
        without.load_state_dict(model.state_dict(), strict=False)
        assert torch.equal(without.forward_parallel(x_noisy, t, action, x_ctx, 0.0)[0],
                           model.forward_parallel(x_noisy, t, action, x_ctx, 0.0, start=start)[0])


def test_clock_embedding_reads_a_26_step_tick_exactly_at_any_length():
    from world.dit import ClockEmbedder

    clock = ClockEmbedder(4)
    with torch.no_grad():
        clock.phase.weight[int(clock.offsets[26 - 2])] = 1.0  # period 26, phase 0: "the counter ticks now"
    s = torch.arange(10**9 - 60, 10**9 + 60)  # a world that has run for years at 20 fps
    ticks = clock(s)[:, 0] > 0
    assert torch.equal(ticks, s % 26 == 0) and ticks.sum() >= 4
    with torch.no_grad():
        clock.long_proj.bias.fill_(1.0)
    assert torch.isfinite(clock(s)).all()
