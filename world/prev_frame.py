"""The direct path to the previous frame (issue 14).

A DiT reaches earlier frames only through attention, so even "copy the last
frame" has to be learned as an attention pattern; game world models give the
denoiser the previous frame as an input instead (GameNGen concatenates past
latents in channels, DIAMOND stacks past frames). Here each token reads the
previous frame's latent tokens in its 3x3 token neighbourhood, which covers
any one-token shift (a tile step of the teacher), in two places:

- in: a per-action linear map of the 9 neighbours, added to the token's input
  embedding, so "RIGHT moves everything one token left" is one linear map the
  action picks;
- out (x0 prediction): the clean frame is predicted as a mix of the 9
  neighbours, weights softmax(action bias + a head on the final hidden state),
  plus the DiT's residual. The action bias starts on the centre (copy in
  place), so a fresh model already predicts "the world stays", and the head
  lets a token override it (the player's own tile, a move blocked by a wall).
  With `dit.prev_shift` the mix is one shift for the whole frame instead: a
  shift head over all the frame's hidden states picks which of the 9 one-token
  moves the camera made (blocked moves included), trained on the teacher's
  camera motion (`shift_labels`), and sampling takes its argmax, so the copy is
  the previous frame moved exactly, never a blend of two positions; a gate per
  token may keep its own place instead (the player's tile).

The previous frame is noised during training with its level given to the
model (the same context noise the cache's K/V see), and in stage 2 it is
often the model's own frame, so rollouts learn not to amplify their own
errors. A world's first frame has none: zeros at level 1 ("pure noise").
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

NEIGHBOURS = 9  # 3x3 token neighbourhood, row-major; index 4 is the token itself
CENTRE = 4


def offset(k):
    """A neighbour index (0..8, int or int tensor) -> (dy, dx), its row and column offset in tokens."""
    return k // 3 - 1, k % 3 - 1


def neighbourhood(prev: torch.Tensor, grid: int) -> torch.Tensor:
    """prev [B, F, N, C] (N = grid * grid) -> [B, F, N, 9, C], zeros beyond the frame's edge."""
    B, Fr, N, C = prev.shape
    x = prev.reshape(B * Fr, grid, grid, C).permute(0, 3, 1, 2)  # [BF, C, g, g]
    cols = F.unfold(F.pad(x, (1, 1, 1, 1)), 3)  # [BF, C*9, N]
    return cols.view(B, Fr, C, NEIGHBOURS, N).permute(0, 1, 4, 3, 2)  # [B, F, N, 9, C]


def inside(grid: int, device=None) -> torch.Tensor:
    """-> bool [N, 9]: which of each token's 3x3 neighbours (as `neighbourhood` orders them) lie
    inside the frame."""
    ones = torch.ones(1, 1, grid, grid, device=device)
    return F.unfold(ones, 3, padding=1).view(NEIGHBOURS, grid * grid).T > 0


def shift_labels(positions: torch.Tensor, chunk: int, pixels_per_token: float) -> torch.Tensor:
    """[B, L, 2] teacher positions (x, y, base pixels) -> [B, L] int64: the neighbour index
    (0..8) every token of frame j copies from the frame it reads as previous (the last frame
    of the chunk before), i.e. the camera's move in tokens, or -1 where there is no such
    frame (the first chunk) or the move is not a whole token within one step (smooth
    motion, a reset): the shift head is not trained there."""
    B, L, _ = positions.shape
    pos = positions.flip(-1).float() / pixels_per_token  # [B, L, 2] (y, x) in tokens
    j = torch.arange(L, device=positions.device)
    src = (j // chunk) * chunk - 1  # [L] the frame chunk j // chunk reads
    d = pos - pos[:, src.clamp_min(0)]  # [B, L, 2] the camera's move since that frame
    whole = (d == d.round()).all(-1) & (d.abs() <= 1).all(-1) & (src >= 0)
    k = ((d[..., 0] + 1) * 3 + (d[..., 1] + 1)).round().long()
    return torch.where(whole, k, -1)


def copyable(grid: int, fixed: list[int]) -> torch.Tensor:
    """-> bool [9, N]: for each one-token move k (a neighbour index), which tokens can be the copy
    of their neighbour k in the previous frame: not a `fixed` token themselves (drawn in place
    whatever the camera does, e.g. the player), and their source neither beyond the frame's edge
    (new content scrolls in there) nor a fixed token (the ground under the player is not the
    player)."""
    N = grid * grid
    own = torch.zeros(N, dtype=torch.bool)
    own[fixed] = True
    blocked = torch.ones(grid + 2, grid + 2, dtype=torch.bool)  # the frame, padded by "beyond the edge"
    blocked[1:-1, 1:-1] = own.view(grid, grid)
    out = torch.empty(NEIGHBOURS, N, dtype=torch.bool)
    for k in range(NEIGHBOURS):
        dy, dx = offset(k)
        out[k] = ~blocked[1 + dy : 1 + dy + grid, 1 + dx : 1 + dx + grid].reshape(N) & ~own
    return out


class PrevFrame(nn.Module):
    def __init__(self, grid: int, token_dim: int, dim: int, num_actions: int, centre_bias: float = 4.0,
                 global_shift: bool = False):
        super().__init__()
        self.grid = grid
        fan_in = NEIGHBOURS * token_dim
        self.proj = nn.Parameter(torch.randn(num_actions, fan_in, dim) * fan_in**-0.5)  # [A, 9C, D]
        self.global_shift = global_shift
        if global_shift:  # one shift per frame, read off every token's hidden state
            self.shift_head = nn.Linear(grid * grid * dim, NEIGHBOURS)
            nn.init.zeros_(self.shift_head.weight)
            with torch.no_grad():
                self.shift_head.bias.zero_()[CENTRE] = centre_bias  # start as "copy in place"
            # a token may keep its own place instead (the player is drawn at the centre of the
            # view whatever the camera does): a gate per token, starting near "follow the shift"
            self.keep_head = nn.Linear(dim, 1)
            nn.init.zeros_(self.keep_head.weight)
            nn.init.constant_(self.keep_head.bias, -2.0)
            return
        bias = torch.zeros(num_actions, NEIGHBOURS)
        bias[:, CENTRE] = centre_bias  # start as "copy in place"
        self.mix_bias = nn.Parameter(bias)  # [A, 9]
        self.mix_head = nn.Linear(dim, NEIGHBOURS)
        nn.init.zeros_(self.mix_head.weight)
        nn.init.zeros_(self.mix_head.bias)

    def embed(self, nb: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """nb [B, F, N, 9, C]; action [B, F] -> input embedding [B, F, N, D]."""
        B, Fr, N = nb.shape[:3]
        w = self.proj[action]  # [B, F, 9C, D]
        return torch.matmul(nb.reshape(B, Fr, N, -1), w)

    def copy(self, nb: torch.Tensor, action: torch.Tensor, hidden: torch.Tensor,
             shift: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """nb [B, F, N, 9, C]; hidden [B, F, N, D] -> (copy [B, F, N, C], logits: the per-token
        mix's [B, F, N, 9], or with a global shift the shift head's [B, F, 9]).

        Per-token mix: softmax(action bias + head). Global shift: the whole frame moved by the
        shift given (training's true camera move, int64 [B, F], -1: none known) or else by
        the head's argmax."""
        if not self.global_shift:
            logits = self.mix_bias[action][:, :, None] + self.mix_head(hidden)  # [B, F, N, 9]
            return torch.matmul(logits.softmax(-1).unsqueeze(-2), nb).squeeze(-2), logits
        B, Fr = hidden.shape[:2]
        logits = self.shift_head(hidden.reshape(B, Fr, -1))  # [B, F, 9]
        pick = logits.argmax(-1)
        if shift is not None:
            pick = torch.where(shift >= 0, shift, pick)
        onehot = (pick[..., None] == torch.arange(NEIGHBOURS, device=pick.device)).to(nb.dtype)  # [B, F, 9]
        keep = torch.sigmoid(self.keep_head(hidden))  # [B, F, N, 1]
        moved = torch.einsum("bfk,bfnkc->bfnc", onehot, nb)
        return moved + keep * (nb[:, :, :, CENTRE] - moved), logits
