"""Per-frame convolutional autoencoder (the frame tokenizer) + patchify.

A frame (RGB uint8 [H, W, 3]) is encoded independently of every other frame
to a small latent map (e.g. 64x64x3 -> 16x16x8 with two stride-2 stages) and
cut into non-overlapping p x p patches, one token each (ViT/DiT patchify).
The DiT denoises these tokens; `decode` maps them back to pixels, with transposed
convolutions (`tokenizer.decoder = "conv"`) or an MLP that draws each token's own cell
(`"tile"`; one token is one tile in the tile-step game). With
`codebook_size > 0` the tokenizer also holds the tile codebook (world/codebook.py)
that generated tokens are snapped onto.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import codebook
from .config import TokenizerConfig


def conv_decoder(cfg: TokenizerConfig) -> nn.Sequential:
    """latent map [B, latent_channels, h, w] -> pixels [B, 3, H, W]: the encoder's stages in reverse."""
    ch = list(cfg.channels)
    dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, ch[-1], 3, padding=1), nn.SiLU()]
    rev = ch[::-1]
    for c_in, c_out in zip(rev, rev[1:] + rev[-1:]):
        dec += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
    return nn.Sequential(*dec, nn.Conv2d(ch[0], 3, 3, padding=1))


def tile_decoder(cfg: TokenizerConfig) -> nn.Sequential:
    """latent map [B, latent_channels, h, w] -> pixels [B, 3, H, W], each token's cell drawn by
    an MLP over its 3x3 token neighbourhood. The first layer is that neighbourhood as one conv
    (kernel 3 patches, stride 1 patch: [B, hidden, g, g]); 1x1 convs are the MLP; the last
    one's 3 x cell x cell outputs are laid out as the cell's pixels (PixelShuffle)."""
    p, h, cell = cfg.patch_size, cfg.decoder_hidden, cfg.image_size // cfg.grid_size
    dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, h, 3 * p, stride=p, padding=p), nn.SiLU()]
    for _ in range(cfg.decoder_layers - 1):
        dec += [nn.Conv2d(h, h, 1), nn.SiLU()]
    return nn.Sequential(*dec, nn.Conv2d(h, 3 * cell * cell, 1), nn.PixelShuffle(cell))


class FrameTokenizer(nn.Module):
    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        ch = list(cfg.channels)
        enc: list[nn.Module] = [nn.Conv2d(3, ch[0], 3, padding=1), nn.SiLU()]
        for c_in, c_out in zip(ch, ch[1:] + ch[-1:]):
            enc += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
        enc += [nn.Conv2d(ch[-1], cfg.latent_channels, 1)]
        self.encoder = nn.Sequential(*enc)
        self.decoder = tile_decoder(cfg) if cfg.decoder == "tile" else conv_decoder(cfg)
        if cfg.codebook_size:  # fitted after tokenizer training (world.train), saved with the weights
            self.register_buffer("codebook", torch.zeros(cfg.codebook_size, cfg.token_dim))  # [K, C]

    def snap(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [..., C] -> each replaced by its nearest code of the codebook."""
        return codebook.snap(tokens, self.codebook)

    # -- pixels <-> latent maps -------------------------------------------------

    def check_frames(self, frames: torch.Tensor) -> None:
        s = self.cfg.image_size
        if not isinstance(frames, torch.Tensor):
            raise TypeError(f"frames must be a torch.Tensor, got {type(frames).__name__}")
        if frames.dtype != torch.uint8:
            raise TypeError(f"frames must be uint8 RGB, got dtype {frames.dtype}")
        if frames.dim() != 4 or tuple(frames.shape[1:]) != (s, s, 3):
            raise ValueError(f"frames must have shape [B, {s}, {s}, 3], got {list(frames.shape)}")

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> tokens [B, N, token_dim]."""
        self.check_frames(frames)
        x = frames.to(self.encoder[0].weight.dtype).permute(0, 3, 1, 2) / 127.5 - 1.0  # [B, 3, H, W]
        return self.patchify(self.encoder(x))

    def decode_float(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, N, token_dim] -> float pixels in [-1, 1], [B, 3, H, W]."""
        return self.decoder(self.unpatchify(tokens)).clamp(-1.0, 1.0)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, N, token_dim] -> uint8 [B, H, W, 3]."""
        x = self.decode_float(tokens)
        return ((x + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    # -- latent maps <-> tokens -------------------------------------------------

    def patchify(self, z: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] -> [B, N, p*p*C] (row-major patches)."""
        p, g = self.cfg.patch_size, self.cfg.grid_size
        B, C = z.shape[:2]
        z = z.reshape(B, C, g, p, g, p).permute(0, 2, 4, 3, 5, 1)  # [B, g, g, p, p, C]
        return z.reshape(B, g * g, p * p * C)

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, N, p*p*C] -> [B, C, h, w]."""
        p, g, C = self.cfg.patch_size, self.cfg.grid_size, self.cfg.latent_channels
        B = tokens.shape[0]
        if tokens.shape[1:] != (g * g, p * p * C):
            raise ValueError(f"tokens must have shape [B, {g * g}, {p * p * C}], got {list(tokens.shape)}")
        z = tokens.reshape(B, g, g, p, p, C).permute(0, 5, 1, 3, 2, 4)  # [B, C, g, p, g, p]
        return z.reshape(B, C, g * p, g * p)

    def reconstruction_loss(self, frames: torch.Tensor, tokens: torch.Tensor | None = None,
                            detail_weight: float = 0.0) -> torch.Tensor:
        """MSE in [-1, 1] pixel space (for tokenizer training). tokens [B, N, token_dim]: decode
        these instead of the frames' own (the decoder tuned alone, world.train.tune_decoder).
        detail_weight > 0 weighs each pixel by 1 + detail_weight x its local contrast (|pixel -
        its 3x3 mean|, over the batch's mean 1): a sprite's edges weigh more than flat ground,
        which a plain MSE lets the decoder smooth over (issue 14)."""
        target = frames.to(torch.float32).permute(0, 3, 1, 2) / 127.5 - 1.0  # [B, 3, H, W]
        tokens = self.encode(frames) if tokens is None else tokens
        err = (self.decoder(self.unpatchify(tokens)) - target).pow(2)
        if not detail_weight:
            return err.mean()
        contrast = (target - F.avg_pool2d(target, 3, 1, 1, count_include_pad=False)).abs().sum(1, keepdim=True)
        w = 1.0 + detail_weight * contrast / contrast.mean().clamp_min(1e-6)  # [B, 1, H, W]
        return (err * w).mean() / w.mean()
