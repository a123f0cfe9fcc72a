"""A prompt switch repaints the world in place (`game.restyle`).

A switch changes how the world looks, never what is where: the teacher's styles (biome, time of
day, weather) are tiles, tints and weather drawn over one layout. The DiT follows a new prompt
slowly: its previous-frame path and the copy gate exist to keep what the last frame showed, and a
switch asks every token to change at once (issue 15: 16 frames after a switch, 60% of the
shipped model's frames showed the new biome; the teacher's 8-frame cross-fade, 87.5%). With the
restyle a switch is a translation: at `WorldModel.set_prompt` every token the world keeps (the
window's frames, the previous frame, the tile map) becomes the code the same tile has in the new
look, the window's K/V are re-cached under the new prompt, and the world goes on from frames that
already show it. The places the player left are still there, in the new look. (Held-out seeds:
87.5% of the frames show the new biome 16 frames after a switch, 60.4% without; docs/RESULTS.md,
twenty-ninth session.)

Two small parts, fitted on frames the teacher draws of one place in two looks
(`echo-infinity restyle`, envs/style_pairs.py):
- `read`: the prompt's pooled sentence embedding [P] -> one distribution per style field over its
  values (`fields` = the fields' sizes, the teacher's (6, 4, 4)). A field the read is not sure of
  (its likeliest value below `SURE`) is kept as the world shows it; a prompt the read is sure of in
  no field leaves the world to the DiT, as before.
- `translate`: a token's code and the wanted look (per field one-hot of the value, or zeros: keep
  this field as the token shows it) -> logits over the codebook.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

SURE = 0.9
"""A field is changed only where the read gives one value at least this probability."""
READ_STEPS = 500  # full-batch steps of the read's fit (a linear layer over a few thousand captions)
CODE_DIM = 64  # a learned embedding per code, beside the code's latent


class Restyle(nn.Module):
    def __init__(self, num_codes: int, token_dim: int, prompt_dim: int, fields: tuple[int, ...],
                 hidden: int = 512):
        super().__init__()
        self.fields = tuple(int(f) for f in fields)
        width = sum(self.fields)
        self.read = nn.Linear(prompt_dim, width)
        self.code = nn.Embedding(num_codes, CODE_DIM)
        self.translate = nn.Sequential(nn.Linear(CODE_DIM + token_dim + width, hidden), nn.SiLU(),
                                       nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, num_codes))

    def field_logits(self, pooled: torch.Tensor) -> list[torch.Tensor]:
        """pooled [B, P] -> one [B, size] logit tensor per field."""
        return list(self.read(pooled).split(self.fields, -1))

    def wanted(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled [B, P] -> [B, sum(fields)]: per field the one-hot of the read's value where it is
        sure (>= SURE), zeros (keep) where not; the unconditional prompt (a zero embedding) names
        nothing."""
        named = pooled.ne(0).any(-1)  # [B]
        parts = []
        for logits in self.field_logits(pooled):
            p, value = logits.softmax(-1).max(-1)  # [B]
            parts.append(F.one_hot(value, logits.shape[-1]).to(pooled.dtype) * ((p >= SURE) & named)[:, None])
        return torch.cat(parts, -1)

    def logits(self, codes: torch.Tensor, book: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        """codes int64 [B, M], book [K, C], wanted [B, W] -> logits [B, M, K] of each token's code
        in the wanted look."""
        want = wanted[:, None].expand(-1, codes.shape[1], -1)
        return self.translate(torch.cat([self.code(codes), book[codes], want], -1))

    @torch.no_grad()
    def forward(self, codes: torch.Tensor, book: torch.Tensor, pooled: torch.Tensor,
                worlds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """codes int64 [B, ...] (code indices; negative: none, left as they are), book [K, C], pooled
        [B, P] the new prompts, worlds bool [B] those to repaint (None: all) -> (codes in the new
        look [B, ...], bool [B] the worlds repainted: those asked for whose prompt the read is sure
        of in at least one field)."""
        want = self.wanted(pooled)
        changes = want.any(-1) if worlds is None else want.any(-1) & worlds
        out = codes.reshape(codes.shape[0], -1).clone()
        for b in torch.nonzero(changes).flatten().tolist():  # a world shows few distinct codes: translate each once
            known = out[b] >= 0
            distinct, where = out[b][known].unique(return_inverse=True)
            out[b][known] = self.logits(distinct[None], book, want[b:b + 1])[0].argmax(-1)[where]
        return out.view_as(codes), changes


def translate_loss(restyle: Restyle, book: torch.Tensor, codes_a: torch.Tensor, codes_b: torch.Tensor,
                   wanted: torch.Tensor) -> torch.Tensor:
    """codes_a, codes_b int64 [B, M] one place in two looks, wanted [B, W] the second look (zeros in
    a field it shares with the first) -> cross-entropy of the translation."""
    logits = restyle.logits(codes_a, book, wanted)
    return F.cross_entropy(logits.flatten(0, 1), codes_b.flatten())


def read_loss(restyle: Restyle, pooled: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """pooled [B, P] captions' embeddings, values int64 [B, n_fields] the styles they describe ->
    the summed cross-entropy of the fields."""
    return sum(F.cross_entropy(logits, values[:, i]) for i, logits in enumerate(restyle.field_logits(pooled)))


def one_hot(values: torch.Tensor, fields: tuple[int, ...]) -> torch.Tensor:
    """values int64 [B, n_fields] (-1: keep the field) -> [B, sum(fields)] the `wanted` encoding."""
    return torch.cat([F.one_hot(values[:, i].clamp(min=0), n).float() * (values[:, i] >= 0)[:, None].float()
                      for i, n in enumerate(fields)], -1)


def fit(restyle: Restyle, book: torch.Tensor, codes_a: torch.Tensor, codes_b: torch.Tensor,
        values_b: torch.Tensor, pooled: torch.Tensor, described: torch.Tensor, steps: int = 1500,
        batch: int = 2048, lr: float = 2e-3, seed: int = 0, progress=None) -> dict[str, float]:
    """Fit both parts. codes_a, codes_b int64 [F, N]: F places, each in two looks; values_b int64
    [F, n_fields] the second look (-1 in a field it shares with the first: "keep"); pooled [Q, P]
    captions' embeddings and described int64 [Q, n_fields] the styles they describe. The read (one
    linear layer) is fitted first on all captions at once, at 5x the rate; then each translate
    step draws `batch` tokens. progress: an optional callable(step, losses dict). -> the last losses."""
    restyle.train()
    opt = torch.optim.Adam(restyle.read.parameters(), 5 * lr)
    for _ in range(READ_STEPS):
        r_loss = read_loss(restyle, pooled, described)
        opt.zero_grad(set_to_none=True)
        r_loss.backward()
        opt.step()
    g = torch.Generator().manual_seed(seed)
    F_, N = codes_a.shape
    wanted = one_hot(values_b, restyle.fields)  # [F, W]
    a, b = codes_a.flatten(), codes_b.flatten()
    place = torch.arange(F_).repeat_interleave(N)
    params = [p for n, p in restyle.named_parameters() if not n.startswith("read.")]
    opt = torch.optim.AdamW(params, lr, weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine to zero
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    losses = {"read": r_loss.item()}
    for step in range(steps):
        i = torch.randint(0, a.numel(), (batch,), generator=g)
        t_loss = translate_loss(restyle, book, a[i][:, None], b[i][:, None], wanted[place[i]])
        opt.zero_grad(set_to_none=True)
        t_loss.backward()
        opt.step()
        sched.step()
        losses["translate"] = t_loss.item()
        if progress is not None:
            progress(step, losses)
    restyle.eval()
    return losses
