"""Fixtures shared by the test files."""
from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory):
    """A random-init `tiny` checkpoint directory (model.safetensors + config.json).

    Its trainer.json names the hash text encoder, so front ends that read the
    encoder from the checkpoint ('auto') stay fast in tests. Its sampler does not
    snap onto the codebook: a random codebook absorbs the small differences a
    prompt makes in a random model's frames, which the front-end tests look for
    (tests/test_codebook.py covers the snap on every backend).
    """
    from world.model import build_model

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    build_model("tiny", sampler={"snap": False}).randomize_(0).save(path)
    (path / "trainer.json").write_text(json.dumps({"train_config": {"text_encoder": "hash"}}))
    return path
