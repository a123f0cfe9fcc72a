"""Model config: presets, JSON round trip, validation errors that name the field."""

import json

import pytest

from world.config import PRESETS, ModelConfig, from_preset
from world.model import WorldModel


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_roundtrip(name):
    cfg = from_preset(name)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_tiny_token_arithmetic():
    cfg = from_preset("tiny")
    assert cfg.tokenizer.latent_size == 16 and cfg.tokenizer.latent_channels == 8
    assert cfg.tokenizer.tokens_per_frame == 64 and cfg.tokenizer.token_dim == 32
    assert cfg.memory.memory_tokens == 32 and cfg.memory.max_temporal_id == 10
    assert from_preset("small").tokenizer.image_size == 128
    assert from_preset("base").tokenizer.image_size == 256


def test_tiny_builds_and_tokenizer_shapes():
    import torch

    model = WorldModel(from_preset("tiny")).eval()
    frames = torch.randint(0, 256, (2, 64, 64, 3), dtype=torch.uint8)
    tokens = model.tokenizer.encode(frames)
    assert tokens.shape == (2, 64, 32)
    assert model.tokenizer.decode(tokens).shape == (2, 64, 64, 3)


@pytest.mark.parametrize("patch,match", [
    ({"dit": {"dim": 100}}, "dit.heads"),
    ({"dit": {"depth": "four"}}, "dit.depth"),
    ({"memory": {"policy": "lstm"}}, "memory.policy"),
    ({"memory": {"rope": "alibi"}}, "memory.rope"),
    ({"memory": {"window_frames": 5, "chunk_frames": 2}}, "memory.window_frames"),
    ({"memory": {"memory_tokens_per_frame": 10}}, "memory.memory_tokens_per_frame"),
    ({"sampler": {"context_noise": 1.5}}, "sampler.context_noise"),
    ({"sampler": {"switch_guidance": 11}}, "sampler.switch_guidance"),
    ({"sampler": {"switch_guidance": "4"}}, "sampler.switch_guidance"),
    ({"tokenizer": {"image_size": 62}}, "tokenizer.image_size"),
    ({"tokenizer": {"image_size": 60}}, "tokenizer.patch_size"),
    ({"dit": {"heads_": 4}}, "dit.heads_"),
    ({"extra": 1}, "extra"),
])
def test_bad_values_name_the_field(patch, match):
    d = from_preset("tiny").to_dict()
    for key, value in patch.items():
        if isinstance(value, dict) and key in d:
            d[key].update(value)
        else:
            d[key] = value
    with pytest.raises(ValueError, match=match.replace(".", r"\.")):
        ModelConfig.from_dict(d)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        from_preset("huge")


def test_sampler_temperature_scales_the_starting_noise():
    import torch

    from world.config import from_preset
    from world.model import WorldModel

    assert from_preset("tiny").sampler.temperature == 0.25
    with pytest.raises(ValueError, match="temperature"):
        from_preset("tiny", sampler={"temperature": -1.0}).validate()
    torch.manual_seed(0)
    model = WorldModel(from_preset("tiny", sampler={"temperature": 0.0})).randomize_(0).eval()
    a, b = model.init_state(1, seed=1), model.init_state(1, seed=2)
    act = torch.zeros(1, dtype=torch.long)
    # at temperature 0 the noise is gone: another seed draws the same frame
    assert torch.equal(model.step(a, act).frame, model.step(b, act).frame)
