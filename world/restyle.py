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
(`echo-infinity restyle`, envs/style_pairs.py) and on train captions:
- the read: the prompt -> one distribution per style field over its values and "not named"
  (`fields` = the fields' sizes, the teacher's (6, 4, 4)), from the pooled sentence embedding
  (`read`) or from the tokens a learned query per field attends to (`read_tokens`), whichever
  `choose_reads` found reads words it was not fitted on right. A field the prompt does not name,
  or the read is not sure of (its likeliest value below `SURE`), is kept as the world shows it
  ("a desert" keeps the weather); a prompt the read is sure of in no field leaves the world to
  the DiT, as before.
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
PRECISE = 0.95
"""`choose_reads`: a field is read from the prompt's tokens where that read, fitted without some
train words, is right on at least this share of the captions of those words it is sure of."""
READ_STEPS = 500  # full-batch steps of the reads' fit (linear layers over a few thousand captions)
CODE_DIM = 64  # a learned embedding per code, beside the code's latent

Prompt = tuple  # (pooled [B, P], tokens [B, L, P], mask [B, L] bool): as the world state keeps them


class Restyle(nn.Module):
    def __init__(self, num_codes: int, token_dim: int, prompt_dim: int, fields: tuple[int, ...],
                 hidden: int = 256):
        super().__init__()
        self.fields = tuple(int(f) for f in fields)
        width = sum(self.fields)
        self.read_sizes = tuple(n + 1 for n in self.fields)  # each field's values and "not named"
        self.read = nn.Linear(prompt_dim, sum(self.read_sizes))  # from the pooled sentence embedding
        self.query = nn.Parameter(torch.zeros(len(self.fields), prompt_dim))  # per field, over the tokens
        self.read_tokens = nn.Linear(prompt_dim, sum(self.read_sizes))  # from the tokens each field's query attends to
        self.register_buffer("from_tokens", torch.zeros(len(self.fields), dtype=torch.bool))  # `choose_reads`
        self.code = nn.Embedding(num_codes, CODE_DIM)
        self.translate = nn.Sequential(nn.Linear(CODE_DIM + token_dim + width, hidden), nn.SiLU(),
                                       nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, num_codes))

    def both_reads(self, prompt: Prompt) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """prompt -> (the pooled read's, the token read's) logits, one [B, size + 1] tensor per field
        (its values, then "the prompt does not name this field")."""
        pooled, tokens, mask = prompt
        score = torch.einsum("blp,fp->bfl", tokens, self.query).masked_fill(~mask[:, None], -1e9)
        attended = torch.einsum("bfl,blp->bfp", score.softmax(-1), tokens)  # [B, F, P]
        per_field = self.read_tokens(attended).split(self.read_sizes, -1)  # field i reads its own query's vector
        return list(self.read(pooled).split(self.read_sizes, -1)), [t[:, i] for i, t in enumerate(per_field)]

    def field_logits(self, prompt: Prompt) -> list[torch.Tensor]:
        """prompt -> one [B, size + 1] logit tensor per field, from the read `choose_reads` chose for it."""
        pooled, tokens = self.both_reads(prompt)
        return [t if bool(use) else p for p, t, use in zip(pooled, tokens, self.from_tokens)]

    def wanted(self, prompt: Prompt) -> torch.Tensor:
        """prompt -> [B, sum(fields)]: per field the one-hot of the read's value where it is sure
        (>= SURE), zeros (keep) where not or where the prompt does not name the field; the
        unconditional prompt (a zero embedding) names nothing."""
        named = prompt[0].ne(0).any(-1)  # [B]
        parts = []
        for n, logits in zip(self.fields, self.field_logits(prompt)):
            p, value = logits.softmax(-1).max(-1)  # [B]
            sure = (p >= SURE) & (value < n) & named
            parts.append(F.one_hot(value.clamp(max=n - 1), n).to(prompt[0].dtype) * sure[:, None])
        return torch.cat(parts, -1)

    def logits(self, codes: torch.Tensor, book: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        """codes int64 [B, M], book [K, C], wanted [B, W] -> logits [B, M, K] of each token's code
        in the wanted look."""
        want = wanted[:, None].expand(-1, codes.shape[1], -1)
        return self.translate(torch.cat([self.code(codes), book[codes], want], -1))

    @torch.no_grad()
    def forward(self, codes: torch.Tensor, book: torch.Tensor, prompt: Prompt,
                worlds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """codes int64 [B, ...] (code indices; negative: none, left as they are), book [K, C], prompt
        the new prompts, worlds bool [B] those to repaint (None: all) -> (codes in the new look
        [B, ...], bool [B] the worlds repainted: those asked for whose prompt the read is sure of in
        at least one field)."""
        want = self.wanted(prompt)
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


def read_loss(restyle: Restyle, prompt: Prompt, described: torch.Tensor) -> torch.Tensor:
    """prompt: captions' embeddings, described int64 [Q, n_fields] the styles they describe (-1: a
    field the caption leaves out) -> the summed cross-entropy of both reads over the fields."""
    target = named_target(described, restyle.fields)
    return sum(F.cross_entropy(logits, target[:, i]) for read in restyle.both_reads(prompt)
               for i, logits in enumerate(read))


def named_target(described: torch.Tensor, fields: tuple[int, ...]) -> torch.Tensor:
    """described int64 [Q, n_fields] (-1: not named) -> the reads' class per field (n: not named)."""
    return torch.where(described >= 0, described, torch.tensor(fields, device=described.device))


def fit_reads(restyle: Restyle, prompt: Prompt, described: torch.Tensor, lr: float = 1e-2) -> float:
    """Fit both reads on all captions at once (READ_STEPS full-batch Adam steps) -> the last loss."""
    params = [restyle.read.weight, restyle.read.bias, restyle.query, *restyle.read_tokens.parameters()]
    opt = torch.optim.Adam(params, lr)
    for _ in range(READ_STEPS):
        loss = read_loss(restyle, prompt, described)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return loss.item()


@torch.no_grad()
def read_scores(restyle: Restyle, prompt: Prompt, described: torch.Tensor) -> dict[str, list[tuple[float, float]]]:
    """Per read ("pooled", "tokens") and field: (share of the captions it is sure of, share of
    those it is right on; "not named" is a value here)."""
    target = named_target(described, restyle.fields)
    out = {}
    for name, read in zip(("pooled", "tokens"), restyle.both_reads(prompt)):
        out[name] = []
        for i, logits in enumerate(read):
            p, value = logits.softmax(-1).max(-1)
            sure = p >= SURE
            right = (value == target[:, i]) & sure
            out[name].append((float(sure.float().mean()), float(right.sum() / sure.sum().clamp(min=1))))
    return out


def choose_reads(restyle: Restyle, prompt: Prompt, described: torch.Tensor) -> dict[str, list[tuple[float, float]]]:
    """Set `from_tokens`. With the reads fitted on part of the train wording and `prompt` captions of
    the rest, a field is read from the tokens where that read is right on >= PRECISE of the captions
    it is sure of, and sure and right on more of them than the pooled read. (A pooled sentence
    embedding mixes the fields, the tokens name them apart; but a time of day in words the token
    read never saw it reads as another with confidence: docs/RESULTS.md, twenty-ninth session.)
    -> `read_scores`."""
    scores = read_scores(restyle, prompt, described)
    for i, ((p_sure, p_right), (t_sure, t_right)) in enumerate(zip(scores["pooled"], scores["tokens"])):
        restyle.from_tokens[i] = t_right >= PRECISE and t_sure * t_right > p_sure * p_right
    return scores


def one_hot(values: torch.Tensor, fields: tuple[int, ...]) -> torch.Tensor:
    """values int64 [B, n_fields] (-1: keep the field) -> [B, sum(fields)] the `wanted` encoding."""
    return torch.cat([F.one_hot(values[:, i].clamp(min=0), n).float() * (values[:, i] >= 0)[:, None].float()
                      for i, n in enumerate(fields)], -1)


def fit(restyle: Restyle, book: torch.Tensor, codes_a: torch.Tensor, codes_b: torch.Tensor,
        values_b: torch.Tensor, prompt: Prompt, described: torch.Tensor, steps: int = 1500,
        batch: int = 2048, lr: float = 2e-3, seed: int = 0, progress=None) -> dict[str, float]:
    """Fit both parts. codes_a, codes_b int64 [F, N]: F places, each in two looks; values_b int64
    [F, n_fields] the second look (-1 in a field it shares with the first: "keep"); prompt the
    captions' embeddings and described int64 [Q, n_fields] the styles they describe. The reads are
    fitted first (`fit_reads`, at 5x the rate); then each translate step draws `batch` tokens.
    progress: an optional callable(step, losses dict). -> the last losses."""
    restyle.train()
    losses = {"read": fit_reads(restyle, prompt, described, 5 * lr)}
    g = torch.Generator().manual_seed(seed)
    F_, N = codes_a.shape
    wanted = one_hot(values_b, restyle.fields)  # [F, W]
    a, b = codes_a.flatten(), codes_b.flatten()
    place = torch.arange(F_).repeat_interleave(N)
    opt = torch.optim.AdamW([restyle.code.weight, *restyle.translate.parameters()], lr, weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then cosine to zero
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * s / steps)))
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
