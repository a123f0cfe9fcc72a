"""The tile codebook: k-means fit, the snap, and every sampler path handing out snapped tokens."""

import pytest
import torch

from engines.backend import EagerGraphBackend
from world import codebook
from world.config import from_preset
from world.model import WorldModel

from .test_world_model import micro


def clusters(n_per=200, k=8, dim=6, spread=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=g) * 3
    pts = centres.repeat_interleave(n_per, 0) + spread * torch.randn(k * n_per, dim, generator=g)
    return centres, pts[torch.randperm(len(pts), generator=g)]


def test_fit_finds_the_clusters_and_is_deterministic():
    centres, pts = clusters()
    codes = codebook.fit(pts, 8, iters=20, seed=3)
    assert codes.shape == (8, 6)
    # every true centre has a code within the noise of it, and every code is used
    assert torch.cdist(centres, codes).min(1).values.max() < 0.1
    assert torch.bincount(codebook.nearest(pts, codes), minlength=8).min() > 0
    assert torch.equal(codes, codebook.fit(pts, 8, iters=20, seed=3))


def test_fit_reseeds_dead_codes():
    _, pts = clusters(k=2)  # 2 clusters, 6 codes: the extra codes must still land on tokens
    codes = codebook.fit(pts, 6, iters=10)
    assert torch.isfinite(codes).all()
    assert torch.cdist(codes, pts).min(1).values.max() < 0.5


def test_fit_needs_enough_tokens():
    with pytest.raises(ValueError, match="at least 16 tokens"):
        codebook.fit(torch.randn(10, 4), 16)


def test_snap_picks_the_nearest_code():
    codes = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    z = torch.tensor([[[0.4, 0.1], [0.6, -0.2]], [[0.1, 3.0], [1.0, 0.0]]])  # [2, 2, 2]
    out = codebook.snap(z, codes)
    assert out.shape == z.shape
    assert torch.equal(out, torch.tensor([[[0.0, 0.0], [1.0, 0.0]], [[0.0, 5.0], [1.0, 0.0]]]))
    assert torch.equal(codebook.snap(codes, codes), codes)  # codes are fixed points


def test_keep_neighbours_prefers_a_nearly_as_close_code_the_neighbourhood_showed():
    # a 3x3 grid of 1-d tokens: code 0 everywhere but a tree (code 2) left of the centre
    prev = torch.zeros(1, 9, 1)
    prev[0, 3] = 2.0
    x = torch.zeros(1, 9, 1)
    x[0, 4] = 1.4  # the centre drawn between the tree (2) and another code (1), which is nearer
    snapped = torch.zeros(1, 9, 1)
    snapped[0, 4] = 1.0
    keep = lambda m: codebook.keep_neighbours(x, snapped, prev, 3, m)[0, :, 0].tolist()
    assert keep(0.0) == snapped[0, :, 0].tolist()  # (2 - 1.4)^2 = 0.36 > 0.16
    assert keep(2.0) == [0.0] * 4 + [2.0] + [0.0] * 4  # 0.36 <= 3 x 0.16: the tree stays, the rest as they were
    # the grid's edge has no neighbours beyond it (not zero tokens)
    trees, x0, ground = torch.full((1, 9, 1), 2.0), torch.full((1, 9, 1), 0.3), torch.zeros(1, 9, 1)
    assert codebook.keep_neighbours(x0, ground, trees, 3, 40.0)[0, 0, 0] == 2.0


def test_snap_keep_keeps_the_world_in_its_codes():
    model = with_codebook(keep=2.0)
    codes = model.tokenizer.codebook
    for backend in (model, EagerGraphBackend(model)):
        state = model.init_state(1, seed=5)
        for a in (1, 4, 0):
            assert in_codebook(backend.step_latents(state, torch.tensor([a]))[0], codes)
    with pytest.raises(ValueError, match="snap_keep"):
        with_codebook(keep=-1.0)


def with_codebook(snap=True, size=32, hold=0, keep=0.0):
    model = micro(dit={"prev_frame": True, "prediction": "x0"})
    cfg = model.cfg.replace(tokenizer={"codebook_size": size}, sampler={"snap": snap, "snap_hold": hold,
                                                                       "snap_keep": keep})
    return WorldModel(cfg).eval().randomize_(seed=1)


def in_codebook(x0, codes):
    return torch.equal(codebook.snap(x0, codes), x0)


@pytest.mark.parametrize("snap", [True, False])
def test_every_sampler_path_snaps(snap):
    model = with_codebook(snap)
    codes = model.tokenizer.codebook
    for backend in (model, EagerGraphBackend(model)):
        state = model.init_state(1, seed=5)
        for a in (1, 4, 0):
            x0 = backend.step_latents(state, torch.tensor([a]))[0]
            assert in_codebook(x0, codes) == snap
            assert in_codebook(state.prev_clean, codes) == snap  # the world keeps the snapped frame


def test_snap_is_held_off_after_a_prompt_change():
    """The `sampler.snap_hold` frames after a world's prompt changes come unsnapped, then the
    snap resumes; a world whose prompt stayed snaps throughout. Both sampler paths agree."""
    model = with_codebook(hold=2)
    codes = model.tokenizer.codebook
    for backend in (model, EagerGraphBackend(model, batch=2)):
        state = model.init_state(2, seed=5)
        backend.step_latents(state, torch.tensor([1, 1]))
        prompt = state.prompt_pooled.clone()
        prompt[0] = torch.randn(prompt.shape[1], generator=torch.Generator().manual_seed(0))
        assert model.set_prompt(state, prompt) == [0]
        snapped = []
        for a in (1, 4, 0, 2):
            x0 = backend.step_latents(state, torch.tensor([a, a]))[0]
            snapped.append([in_codebook(x0[w], codes) for w in (0, 1)])
        assert snapped == [[False, True], [False, True], [True, True], [True, True]]


def test_codebook_is_saved_with_the_weights(tmp_path):
    model = with_codebook()
    model.save(tmp_path)
    back = WorldModel.load(tmp_path)
    assert back.cfg.sampler.snap and back.cfg.tokenizer.codebook_size == 32
    assert torch.equal(back.tokenizer.codebook, model.tokenizer.codebook)


def test_snap_needs_a_codebook():
    with pytest.raises(ValueError, match="sampler.snap"):
        from_preset("tiny", tokenizer={"codebook_size": 0}, sampler={"snap": True})
    with pytest.raises(ValueError, match="tokenizer.codebook_size"):
        from_preset("tiny", tokenizer={"codebook_size": -1})


def test_training_fits_the_codebook_once_after_the_tokenizer(tmp_path):
    from envs.dataset import clip_batches, list_shards
    from envs.record import record_episodes
    from world.train import Trainer

    from .test_train import MICRO, rows, small_config

    record_episodes("teacher", "explore", episodes=1, steps=60, out_dir=tmp_path / "data", seed=3, progress=False)
    shards = [str(p) for p in list_shards(tmp_path / "data")]
    model = {**MICRO, "tokenizer": {**MICRO["tokenizer"], "codebook_size": 16}, "sampler": {"snap": True}}
    cfg = small_config(tmp_path / "run", model=model, s1_steps=1, s2_steps=1, self_rollout=1.0,
                       codebook_frames=64, codebook_iters=3)
    out = Trainer(cfg, clip_batches(shards), progress=False).run()
    fits = [r for r in rows(out) if r.get("event") == "codebook"]
    assert len(fits) == 1 and fits[0]["frames"] >= 64 and fits[0]["psnr_snapped"] > 0
    codes = WorldModel.load(out).tokenizer.codebook
    assert len(torch.unique(codes, dim=0)) == 16  # fitted: 16 distinct codes, not the zeros it starts as
    assert [r["steps"] for r in rows(out) if r.get("event") == "decoder"] == [cfg.decoder_steps]
    # a resumed run keeps the codebook it has (the fit runs once, with the latent scale)
    Trainer(small_config(tmp_path / "run", model=model, s1_steps=2, s2_steps=1, codebook_frames=64,
                         codebook_iters=3), clip_batches(shards), progress=False).run()
    assert len([r for r in rows(out) if r.get("event") == "codebook"]) == 1
    assert torch.equal(WorldModel.load(out).tokenizer.codebook, codes)


def test_tune_decoder_trains_the_decoder_alone(tmp_path):
    """The encoder and the codebook stay as they are (the DiT's latents and snap targets); the
    decoder's round trip gets better, through the codebook too."""
    from envs.dataset import clip_batches, list_shards
    from envs.record import record_episodes
    from world.config import from_preset
    from world.train import psnr, tune_decoder

    from .test_train import MICRO

    tok = WorldModel(from_preset("tiny", **MICRO)).randomize_(seed=1).tokenizer
    record_episodes("teacher", "explore", episodes=1, steps=60, out_dir=tmp_path / "data", seed=3, progress=False)
    batches = clip_batches([str(p) for p in list_shards(tmp_path / "data")])
    frames = next(batches(1, 16))["frames"][:, 0]
    frozen = {k: v.clone() for k, v in tok.state_dict().items() if not k.startswith("decoder.")}
    before = psnr(tok, frames), psnr(tok, frames, snap=True)
    tune_decoder(tok, batches, steps=30, lr=3e-3, snap_share=0.5, seed=0)
    assert all(torch.equal(v, tok.state_dict()[k]) for k, v in frozen.items())
    assert psnr(tok, frames) > before[0] + 1 and psnr(tok, frames, snap=True) > before[1] + 1
    assert not any(p.requires_grad for p in tok.decoder.parameters())


def test_detail_weight_counts_errors_on_edges_more():
    """Plain MSE at 0; with a detail weight the same error costs more on a sprite's edge than on
    flat ground."""
    from .test_train import MICRO

    tok = WorldModel(from_preset("tiny", **MICRO)).tokenizer
    frames = torch.full((1, 64, 64, 3), 100, dtype=torch.uint8)
    frames[0, 20:28, 20:28] = 220  # one bright tile on flat ground
    target = frames.float().permute(0, 3, 1, 2) / 127.5 - 1.0
    edge = torch.zeros(1, 1, 64, 64, dtype=torch.bool)
    edge[..., 19:29, 19:29] = True
    edge[..., 21:27, 21:27] = False  # a ring around the tile's border

    class Draws(torch.nn.Module):  # a decoder that is off by 0.1 where `where` is set
        def __init__(self, where):
            super().__init__()
            self.where = where

        def forward(self, z):
            return target + 0.1 * self.where

    tokens = tok.encode(frames)
    loss = {}
    for name, where in (("edge", edge), ("flat", ~edge)):
        tok.decoder = Draws(where.float())
        loss[name] = [float(tok.reconstruction_loss(frames, tokens, w)) for w in (0.0, 4.0)]
    assert loss["edge"][0] == pytest.approx(0.01 * edge.float().mean().item())  # plain MSE
    assert loss["edge"][1] > loss["edge"][0] and loss["flat"][1] < loss["flat"][0]


@pytest.mark.parametrize("decoder", ["conv", "tile"])
def test_onnxruntime_snaps_and_draws_like_torch(tmp_path, decoder):
    """The shipped parts (tile decoder, centre heads, the snap's keep) export and run alike."""
    from engines.backend import TorchBackend
    from engines.registry import make_backend

    from .test_engines import assert_close, run_parity

    model = with_codebook()
    if decoder == "tile":
        cfg = model.cfg.replace(tokenizer={"decoder": "tile", "decoder_hidden": 16}, dit={"outcome_heads": "centre"},
                                sampler={"snap_keep": 2.0})
        model = WorldModel(cfg).eval().randomize_(seed=1)
    ort = make_backend("onnxruntime", model, 1, cache_dir=tmp_path / "onnx", warn=pytest.fail)
    worst, state = run_parity(model, TorchBackend(model), ort, frames=10)
    assert_close(worst)
    assert in_codebook(state.prev_clean, model.tokenizer.codebook)


def test_cli_fits_a_codebook_for_a_trained_checkpoint(tmp_path, ckpt, capsys):
    from demos import cli
    from envs.record import record_episodes

    record_episodes("teacher", "explore", episodes=1, steps=80, out_dir=tmp_path / "data", seed=5, progress=False,
                    motion="tile")
    out = tmp_path / "snapped"
    argv = ["codebook", "--checkpoint", str(ckpt), "--data", str(tmp_path / "data"), "--out", str(out),
            "--size", "16", "--frames", "8", "--iters", "2", "--decoder-steps", "3", "--no-progress"]
    assert cli.main(argv) == 0
    assert "decoder tuned for 3 steps" in capsys.readouterr().out
    model = WorldModel.load(out)
    assert model.cfg.sampler.snap and model.cfg.tokenizer.codebook_size == 16
    assert len(torch.unique(model.tokenizer.codebook, dim=0)) == 16
    source = WorldModel.load(ckpt)
    assert torch.equal(model.dit.out.weight, source.dit.out.weight)  # the rest of the weights as they were
    assert torch.equal(model.tokenizer.encoder[0].weight, source.tokenizer.encoder[0].weight)
    assert not torch.equal(model.tokenizer.decoder[0].weight, source.tokenizer.decoder[0].weight)
    # bad input: one line, exit status 2
    assert cli.main([*argv[:-9], "--size", "100000"]) == 2
    assert cli.main([*argv[:-9], "--size", "4096", "--frames", "1"]) == 2
    assert cli.main([*argv[:-9], "--decoder-steps", "-1"]) == 2
    assert cli.main([*argv[:-9], "--decoder-detail-weight", "-1"]) == 2
    assert cli.main(["codebook", "--checkpoint", str(tmp_path / "none"), "--data", str(tmp_path / "data"),
                     "--out", str(out)]) == 2
    assert "error" in capsys.readouterr().err
    # a new decoder on the frozen encoder: the tile decoder starts fresh, trained by the tune
    tile, new_decoder = tmp_path / "tile", ["--model", '{"tokenizer": {"decoder": "tile"}}']
    assert cli.main([*argv[:5], "--out", str(tile), *argv[7:], *new_decoder]) == 0
    model = WorldModel.load(tile)
    assert model.cfg.tokenizer.decoder == "tile" and torch.equal(model.dit.out.weight, source.dit.out.weight)
    assert model.tokenizer.decode(model.tokenizer.encode(torch.zeros(1, 64, 64, 3, dtype=torch.uint8))).shape == (1, 64, 64, 3)
    assert cli.main([*argv, *new_decoder, "--decoder-steps", "0"]) == 2
    assert cli.main([*argv, "--model", '{"dit": {"prev_shift": true}}']) == 2
    assert "--decoder-steps" in capsys.readouterr().err
