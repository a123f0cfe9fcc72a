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


def neighbourhood(prev: torch.Tensor, grid: int) -> torch.Tensor:
    """prev [B, F, N, C] (N = grid * grid) -> [B, F, N, 9, C], zeros beyond the frame's edge."""
    B, Fr, N, C = prev.shape
    x = prev.reshape(B * Fr, grid, grid, C).permute(0, 3, 1, 2)  # [BF, C, g, g]
    cols = F.unfold(F.pad(x, (1, 1, 1, 1)), 3)  # [BF, C*9, N]
    return cols.view(B, Fr, C, NEIGHBOURS, N).permute(0, 1, 4, 3, 2)  # [B, F, N, 9, C]


class PrevFrame(nn.Module):
    def __init__(self, grid: int, token_dim: int, dim: int, num_actions: int, centre_bias: float = 4.0):
        super().__init__()
        self.grid = grid
        fan_in = NEIGHBOURS * token_dim
        self.proj = nn.Parameter(torch.randn(num_actions, fan_in, dim) * fan_in**-0.5)  # [A, 9C, D]
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

    def copy(self, nb: torch.Tensor, action: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """The action-chosen mix of the neighbours: nb [B, F, N, 9, C]; hidden [B, F, N, D] -> [B, F, N, C]."""
        logits = self.mix_bias[action][:, :, None] + self.mix_head(hidden)  # [B, F, N, 9]
        return torch.matmul(logits.softmax(-1).unsqueeze(-2), nb).squeeze(-2)
