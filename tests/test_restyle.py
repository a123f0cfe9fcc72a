"""world/restyle.py and envs/style_pairs.py: a prompt switch repaints the world in place."""

import json

import numpy as np
import pytest
import torch

from envs.style_pairs import FIELD_SIZES, render_pairs
from envs.teacher import TeacherEnv
from world import restyle
from world.config import from_preset
from world.model import WorldModel
from world.restyle import Restyle

from .test_engines import micro

FIELDS = (2, 3)
K = 12  # codes 0..11: code c in look (f0, f1) is c // 6 * 6 + f0 * 3 + f1, the tile is c // 6


def look_of(code: torch.Tensor, f0: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
    return code // 6 * 6 + f0 * 3 + f1


def toy_fit(steps=300) -> tuple[Restyle, torch.Tensor]:
    """A restyle fitted on the toy codes; the read reads field values written into the first
    prompt dimensions."""
    torch.manual_seed(0)
    book = torch.randn(K, 4)
    r = Restyle(K, 4, 8, FIELDS, hidden=64)
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, K, (256, 6), generator=g)
    v = torch.stack([torch.randint(-1, 2, (256,), generator=g), torch.randint(-1, 3, (256,), generator=g)], 1)
    kept0, kept1 = a // 3 % 2, a % 3  # a field marked -1 keeps the look the code shows
    b = look_of(a, torch.where(v[:, :1] >= 0, v[:, :1], kept0), torch.where(v[:, 1:] >= 0, v[:, 1:], kept1))
    described = torch.stack([torch.arange(60) % 2, torch.arange(60) % 3], 1)
    described[::5, 0] = -1  # some captions leave a field out
    described[1::7, 1] = -1
    restyle.fit(r, book, a, b, v, prompts(described), described, steps, batch=256, lr=1e-2)
    return r, book


def prompts(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[Q, 2] field values (-1: not named) -> a prompt (pooled [Q, 8], one token [Q, 1, 8], mask)
    that names them."""
    p = torch.zeros(len(values), 8)
    q = torch.arange(len(values))
    p[q, values[:, 0].clamp(min=0)] = (values[:, 0] >= 0).float()
    p[q, 2 + values[:, 1].clamp(min=0)] = (values[:, 1] >= 0).float()
    return as_prompt(p)


def as_prompt(pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return pooled, pooled[:, None], torch.ones(len(pooled), 1, dtype=torch.bool)


def test_the_restyle_learns_each_code_in_the_named_look_and_keeps_what_is_not_named():
    r, book = toy_fit()
    codes = torch.arange(K)[None].repeat(6, 1)  # every code, in 6 worlds
    looks = torch.tensor([[0, 0], [1, 2], [0, 1], [1, 0], [1, 1], [0, 2]])
    new, changed = r(codes, book, prompts(looks))
    assert changed.all()
    assert torch.equal(new, look_of(codes, looks[:, :1], looks[:, 1:]))
    # the unconditional prompt (zeros) names nothing, even where the read's bias alone is sure
    with torch.no_grad():
        bias = r.read.bias.clone()
        r.read.bias.copy_(torch.tensor([9.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0]))
        assert not r.wanted(as_prompt(torch.zeros(1, 8))).any()
        r.read.bias.copy_(bias)
    # an unsure read (no field named) changes nothing; -1 (no code) stays
    none = as_prompt(torch.full((1, 8), 0.1))
    held = torch.tensor([[3, -1, 7]])
    out, changed = r(held, book, none)
    assert not changed.any() and torch.equal(out, held)
    out, _ = r(held, book, prompts(torch.tensor([[1, 2]])))
    assert out[0, 1] == -1 and out[0, 0] == look_of(torch.tensor(3), 1, 2)
    # only one field named: the other is kept as each code shows it
    want = r.wanted(prompts(torch.tensor([[-1, 2]])))
    assert r.field_logits(prompts(torch.tensor([[-1, 2]])))[0].argmax() == 2  # read as "not named"
    assert want[0, :2].sum() == 0 and want[0, 2:].argmax() == 2
    logits = r.logits(torch.arange(K)[None], book, want)
    assert torch.equal(logits.argmax(-1)[0], look_of(torch.arange(K), torch.arange(K) // 3 % 2, torch.tensor(2)))


def test_each_field_takes_the_read_that_reads_unseen_words_right():
    """Field 0 is named only by the tokens (the pooled embedding is noise); field 1 by both, but its
    tokens say the opposite on the captions the reads were not fitted on."""
    g = torch.Generator().manual_seed(0)
    r = Restyle(K, 4, 8, FIELDS, hidden=16)

    def captions(n, flip):
        values = torch.stack([torch.randint(0, 2, (n,), generator=g), torch.randint(0, 3, (n,), generator=g)], 1)
        tokens = torch.zeros(n, 2, 8)
        tokens[torch.arange(n), 0, values[:, 0]] = 1.0
        shown = (values[:, 1] + flip) % 3  # the check captions' tokens name another value
        tokens[torch.arange(n), 1, 2 + shown] = 1.0
        pooled = torch.randn(n, 8, generator=g)
        pooled[torch.arange(n), 5 + values[:, 1]] += 4.0
        return (pooled, tokens, torch.ones(n, 2, dtype=torch.bool)), values

    restyle.fit_reads(r, *captions(200, 0))
    found = restyle.choose_reads(r, *captions(100, 1))
    assert r.from_tokens.tolist() == [True, False]
    assert found["tokens"][0][1] == 1.0 and found["tokens"][1][1] < 0.5  # right when sure


def restyled_model():
    """A micro model whose restyle is sure of every prompt and paints every code as the last one."""
    model = micro(dit={"copy_gate": True})
    cfg = model.cfg.replace(tokenizer={"codebook_size": K}, sampler={"snap": True, "tile_map": True},
                            game={"restyle": list(FIELDS)})
    model = WorldModel(cfg).eval().randomize_(seed=1)
    with torch.no_grad():
        model.restyle.read.weight.zero_()
        model.restyle.read.bias.copy_(torch.tensor([0.0, 10.0, 0.0, 0.0, 0.0, 0.0, 0.0]))  # field 0 is value 1, field 1 unsure
        last = model.restyle.translate[-1]
        last.weight.zero_()
        last.bias.zero_()[K - 1] = 10.0
    return model


def test_a_switch_repaints_what_the_world_keeps_in_the_changed_worlds_only():
    model = restyled_model()
    book = model.tokenizer.codebook
    one, other = torch.zeros(384), torch.zeros(384)
    one[0], other[1] = 1.0, 1.0
    state = model.init_state(2, torch.stack([one, one]), seed=3)
    for a in (1, 2, 1):
        model.step(state, torch.tensor([a, a]))
    state.cache.clean[0] += 0.01  # world 0 keeps frames off the codebook (unsnapped): left as they are
    before = {k: v.clone() for k, v in state.tensors().items()}
    changed = model.set_prompt(state, torch.stack([one, other]))
    assert changed == [1]
    after = state.tensors()
    for name in ("cache.clean", "cache.latent", "prev.clean", "prev.latent", "tile_map.codes", "cache.k"):
        assert torch.equal(after[name][:, 0] if name == "cache.k" else after[name][0],
                           before[name][:, 0] if name == "cache.k" else before[name][0]), name
    used = state.cache.slot_frame[1] >= 0
    new = torch.cdist(after["cache.clean"][1][used].flatten(0, 1), book).argmin(-1)
    assert (new == K - 1).all() and (torch.cdist(after["prev.clean"][1], book).argmin(-1) == K - 1).all()
    # the context noise a cached frame carries is kept
    noise = lambda t: t["cache.latent"][1][used] - t["cache.clean"][1][used]  # noqa: E731
    torch.testing.assert_close(noise(after), noise(before))
    held = before["tile_map.codes"][1]
    assert (held >= 0).any() and (held < 0).any()
    assert torch.equal(after["tile_map.codes"][1], torch.where(held >= 0, K - 1, -1))  # unknown cells stay unknown
    assert not torch.equal(after["cache.k"][:, 1], before["cache.k"][:, 1])  # re-cached
    assert not model.switching(state).any()  # repainted: nothing to hold unsnapped
    model.step(state, torch.tensor([0, 0]))  # and it goes on


def test_a_prompt_the_read_is_unsure_of_is_left_to_the_dit():
    model = restyled_model()
    with torch.no_grad():
        model.restyle.read.bias.zero_()  # every field a coin toss: nothing is repainted
    one, other = torch.zeros(384), torch.zeros(384)
    one[0], other[1] = 1.0, 1.0
    state = model.init_state(1, one[None], seed=3)
    model.step(state, torch.tensor([1]))
    clean = state.cache.clean.clone()
    assert model.set_prompt(state, other[None]) == [0]
    assert torch.equal(state.cache.clean, clean)
    assert model.switching(state).all()  # held as a switch without the restyle is


def test_render_style_draws_the_same_place_in_another_look_and_changes_nothing():
    env = TeacherEnv(motion="tile")
    env.reset(seed=4, options={"style": {"biome": "desert", "time_of_day": "noon", "weather": "rain"}})
    obs, *_ = env.step(1)
    assert np.array_equal(env.render_style(env.style), obs)  # the look it has: the frame it showed
    snowy = env.render_style("a snowy tundra at night")
    assert snowy.shape == (64, 64, 3) and snowy.dtype == np.uint8 and not np.array_equal(snowy, obs)
    assert env.style.biome == "desert"  # the game's own look is unchanged
    assert np.array_equal(env.step(0)[0], env.render_style(env.style))
    with pytest.raises(ValueError):
        env.render_style({"biome": "ocean"})


def test_render_pairs_marks_the_kept_fields():
    pairs = render_pairs(2, 3, seed=5, keep=0.5)
    assert pairs.frames_a.shape == pairs.frames_b.shape == (6, 64, 64, 3)
    assert pairs.values_b.shape == (6, 3) and (pairs.values_b >= -1).all()
    assert (pairs.values_b < np.array(FIELD_SIZES)).all()
    all_kept = (pairs.values_b == -1).all(1)
    assert all(np.array_equal(a, b) for a, b, k in zip(pairs.frames_a, pairs.frames_b, all_kept) if k)


def test_restyle_setting_is_checked():
    with pytest.raises(ValueError, match="game.restyle"):
        from_preset("tiny", game={"restyle": [1, 4]})
    with pytest.raises(ValueError, match="game.restyle"):
        from_preset("tiny", tokenizer={"codebook_size": 0}, sampler={"snap": False}, game={"restyle": [6, 4, 4]})
    assert from_preset("tiny", game={"restyle": [6, 4, 4]}).game.restyle == (6, 4, 4)


def test_the_restyle_command_writes_a_checkpoint_that_repaints(tmp_path, capsys):
    from demos.cli import main

    src = tmp_path / "src"
    model = micro(dit={"copy_gate": True})
    cfg = model.cfg.replace(tokenizer={"image_size": 64, "channels": [32, 64], "codebook_size": 32},
                            sampler={"snap": True})
    WorldModel(cfg).randomize_(0).save(src)
    out = tmp_path / "out"
    assert main(["restyle", "--checkpoint", str(src), "--out", str(out), "--worlds", "4", "--per-world", "2",
                 "--captions", "20", "--steps", "5", "--text-encoder", "hash", "--no-progress"]) == 0
    assert "translated" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["game"]["restyle"] == list(FIELD_SIZES)
    assert WorldModel.load(out).restyle is not None
    assert main(["restyle", "--checkpoint", str(src), "--out", str(out), "--steps", "0"]) == 2


def test_onnxruntime_repaints_like_torch(tmp_path):
    """The repaint is a change of the state, which stays torch: every backend steps on from it."""
    pytest.importorskip("onnxruntime")
    from engines.registry import make_backend

    from .test_engines import TOL, max_diff

    model = restyled_model()
    one, other = torch.zeros(384), torch.zeros(384)
    one[0], other[1] = 1.0, 1.0
    ort_backend = make_backend("onnxruntime", model, 2, cache_dir=tmp_path / "onnx", warn=pytest.fail)

    def run(backend):
        state, frames = model.init_state(2, torch.stack([one, one]), seed=5), []
        for i in range(5):
            if i == 2:
                assert model.set_prompt(state, torch.stack([one, other])) == [1]
            frames.append(backend.step_latents(state, torch.tensor([1, 2]))[0])
        return torch.stack(frames)

    assert max_diff(run(ort_backend), run(model)) <= TOL


def test_caption_parts_split_the_train_wording_and_omit_leaves_fields_out():
    from envs.style import Style, caption, parse_prompt
    from envs.style_pairs import captions

    style = Style("desert", "dusk", "rain")
    rng = np.random.default_rng(0)
    fit = {caption(style, rng, part="fit") for _ in range(200)}
    check = {caption(style, rng, part="check") for _ in range(200)}
    assert fit and check and not fit & check
    assert all("dry sand flats" in c for c in check) and not any("dry sand flats" in c for c in fit)
    for _ in range(20):
        text = caption(style, rng, omit=("weather",))
        assert parse_prompt(text, default=Style("snow", "noon", "fog")) == Style("desert", "dusk", "fog")
        assert not text.startswith((",", " ")) and "  " not in text
    with pytest.raises(ValueError, match="part"):
        caption(style, rng, part="val")
    with pytest.raises(ValueError, match="part"):
        caption(style, rng, heldout=True, part="fit")
    texts, described = captions(300, seed=1, omit=0.5)
    assert (described == -1).any() and ((described >= 0).sum(1) >= 1).all()  # one field named at least
