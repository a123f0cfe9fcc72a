"""Typed model configuration with named presets (gpt-fast `ModelArgs` style).

One dataclass per component, nested in `ModelConfig`. A config is saved as
JSON beside the weights (`config.json` next to `model.safetensors`) and read
back with `ModelConfig.from_dict`, which rejects unknown keys and bad values
with a `ValueError` that names the field.

Token arithmetic of the default `tiny` preset (CPU, 64x64):
  frame 64x64x3 -> conv autoencoder (widths 32, 64; 2 stride-2 stages) -> latent 16x16x8
  -> patchify 2x2 -> 8x8 = 64 tokens of 32 values per frame.
  Attention keys per step: 1 sink frame (64) + 32 memory tokens
  + 8 window frames incl. the current one (512) = 608 keys.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from world.actions import GAME_ACTIONS

MEMORY_POLICIES = ("window", "sink", "compress", "evolving", "full")
ROPE_RECIPES = ("unified_relative", "absolute", "window_relative")
PROMPT_MODES = ("pooled", "cross_attention")
PREDICTIONS = ("velocity", "x0")
OUTCOME_HEADS = ("pooled", "centre")
DECODERS = ("conv", "tile")
MOTIONS = ("smooth", "tile")
SPAWN_ON = ("drawn", "entered")  # game.spawn_on


@dataclass
class TokenizerConfig:
    """Per-frame convolutional autoencoder + patchify."""

    image_size: int = 64
    """Frame height = width in pixels (RGB uint8)."""
    channels: tuple[int, ...] = (32, 64)
    """Conv widths, one stride-2 stage each: latent side = image_size / 2**len."""
    latent_channels: int = 8
    """Channels of the latent map."""
    patch_size: int = 2
    """Latent patch side; tokens per frame = (latent side / patch_size)**2."""
    decoder: str = "conv"
    """'conv': transposed convolutions back up the latent map (checkpoints before issue 14's
    eleventh session). 'tile': each token drawn on its own p x p-pixel cell by an MLP reading
    its 3x3 token neighbourhood (the cell is one tile at `game.motion` 'tile'). The conv
    decoder blurred trees, rocks and gems below the tile check; a 512-wide tile decoder at the
    same cost per frame kept a third more of them, the shipped 1,024-wide one half again as
    many as the conv decoder (issue 14, docs/RESULTS.md)."""
    decoder_hidden: int = 512
    """decoder 'tile': width of the MLP."""
    decoder_layers: int = 2
    """decoder 'tile': hidden layers of the MLP (the first reads the 3x3 neighbourhood)."""
    codebook_size: int = 0
    """Codes in the tile codebook (world/codebook.py): k-means over the tokens of recorded
    frames, fitted once the tokenizer is trained; `sampler.snap` snaps generated tokens onto
    it. 0: no codebook (checkpoints before it)."""

    @property
    def latent_size(self) -> int:
        return self.image_size // 2 ** len(self.channels)

    @property
    def grid_size(self) -> int:
        """Tokens per side of one frame."""
        return self.latent_size // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        return self.grid_size**2

    @property
    def token_dim(self) -> int:
        """Values per token (what the DiT denoises)."""
        return self.patch_size**2 * self.latent_channels

    def validate(self) -> None:
        _check(self.image_size > 0, "tokenizer.image_size", self.image_size, "must be > 0")
        _check(len(self.channels) >= 1 and all(c > 0 for c in self.channels),
               "tokenizer.channels", self.channels, "must be a non-empty list of positive ints")
        down = 2 ** len(self.channels)
        _check(self.image_size % down == 0, "tokenizer.image_size", self.image_size,
               f"must be divisible by 2**len(channels) = {down}")
        _check(self.latent_channels > 0, "tokenizer.latent_channels", self.latent_channels, "must be > 0")
        _check(self.patch_size > 0 and self.latent_size % self.patch_size == 0,
               "tokenizer.patch_size", self.patch_size,
               f"must divide the latent side {self.latent_size}")
        _check(self.decoder in DECODERS, "tokenizer.decoder", self.decoder, f"must be one of {DECODERS}")
        _check(self.decoder_hidden > 0, "tokenizer.decoder_hidden", self.decoder_hidden, "must be > 0")
        _check(self.decoder_layers >= 1, "tokenizer.decoder_layers", self.decoder_layers, "must be >= 1")
        _check(0 <= self.codebook_size <= 65536, "tokenizer.codebook_size", self.codebook_size,
               "must be in [0, 65536]")


@dataclass
class DiTConfig:
    """Causal diffusion transformer over frame tokens."""

    dim: int = 128
    """Hidden width D."""
    depth: int = 4
    """Number of transformer blocks."""
    heads: int = 4
    """Attention heads; head dim = dim / heads, split into (t, h, w) for 3D RoPE."""
    mlp_ratio: float = 4.0
    """FFN hidden width = mlp_ratio * dim."""
    num_actions: int = 8
    """Size of the discrete action space (actions are int64 in [0, num_actions))."""
    prompt_dim: int = 384
    """Width of the text encoder's embeddings (all-MiniLM-L6-v2: 384)."""
    prompt_mode: str = "pooled"
    """'pooled': prompt embedding added to the adaLN condition (tiny);
    'cross_attention': a cross-attention layer per block over prompt tokens."""
    prompt_tokens: int = 16
    """Fixed number of prompt tokens kept in the world state (padded/truncated)."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    prev_frame: bool = False
    """A direct path to the previous frame (world/prev_frame.py): each token reads the last
    frame's latent tokens in its 3x3 token neighbourhood through a per-action projection,
    and the output is an action-chosen mix of those neighbours plus a residual. Off: the
    previous frame is reached through attention only (checkpoints before issue 14)."""
    prev_copy_clean: bool = False
    """With prev_frame: the copy path mixes the previous frame as committed, before its
    context noise, while the input path and the cache read it noised. A noised copy has to
    be denoised by the residual every frame, and that shrinks detail frame after frame;
    a clean copy carries the world forward exactly (issue 14)."""
    prev_shift: bool = False
    """With prev_frame: the copy moves the whole previous frame by one of the 9 one-token
    shifts, picked once per frame by a shift head (trained on the teacher's camera motion,
    world.prev_frame.shift_labels) and taken hard (argmax) when sampling, instead of a soft
    per-token mix; a per-token gate may keep a token in place (the player's tile). The
    camera moves the whole view or none of it; a soft mix of "moved" and "blocked" is a
    ghost of two frames, which the next frame copies again (issue 14)."""
    player_surroundings: bool = False
    """With prev_frame: the previous frame's 3x3 tokens around the grid's centre (the player's
    tile and its neighbours) enter the adaLN condition of every token through a per-action
    linear map, so "the tile I walk into blocks me" is one map the action picks. Without it
    a blocked move is a rule about one token that every other token must learn to read
    through attention; the shipped `tiny` moves the view on 70% of the tokens that tell a
    blocked move from a made one (issue 14, docs/RESULTS.md). Zero-initialised: a checkpoint
    warm-started with it draws what it drew before."""
    copy_gate: bool = False
    """A per-token head that decides, after sampling, whether a token is a copy of one of its
    3x3 neighbours' previous codes (taken exactly) or a tile the DiT draws
    (world/copy_gate.py; `sampler.copy_gate` sets its threshold). The snap alone reads a
    copy that drifted off its code as another tile, and the objects fade frame by frame
    (issue 14). Needs a codebook and sampler.snap; trained by `train --s2-train gate`."""
    clock: bool = False
    """Each frame's index since its world began (reset) enters the adaLN condition
    (`dit.ClockEmbedder`): what a game's fixed-step counters need, which no window can
    count (Crafter's food, water and energy drop every 26, 21 and 31 steps and its daylight
    turns every 300; without it the status bar is held still and wrong by horizon 64,
    issue 18). Training clips read it from where they start in their episode. Zero-initialised:
    a checkpoint warm-started with it draws what it drew before."""
    prediction: str = "velocity"
    """What the DiT outputs: 'velocity' (eps - x0, rectified flow) or 'x0' (the clean latent;
    the sampler turns it into a velocity). prev_frame needs 'x0' (its copy path is an x0)."""
    outcome_heads: str = "pooled"
    """What the reward and done heads read from a committed frame's hidden states.
    'pooled': a linear map of the mean over all tokens, the reward regressed (checkpoints
    before issue 17). 'centre': an MLP over that mean and the 3x3 tokens around the player's
    token (`GameConfig.fixed_tokens`: the grid's centre on the teacher, row 3 column 4 on
    Crafter), and both heads are classifiers: the reward is paid (1) where the pickup's
    (Crafter: an achievement's) logit passes 0 (probability 0.5). A gem vanishing under the player is
    1/64 of the mean, and the pooled heads never told a pickup frame from the others (issue 17)."""

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def validate(self) -> None:
        _check(self.dim > 0, "dit.dim", self.dim, "must be > 0")
        _check(self.depth > 0, "dit.depth", self.depth, "must be > 0")
        _check(self.heads > 0 and self.dim % self.heads == 0, "dit.heads", self.heads,
               f"must divide dit.dim = {self.dim}")
        _check(self.head_dim % 2 == 0 and self.head_dim >= 8, "dit.heads", self.heads,
               f"head dim {self.head_dim} must be even and >= 8 for 3D RoPE")
        _check(self.mlp_ratio > 0, "dit.mlp_ratio", self.mlp_ratio, "must be > 0")
        _check(self.num_actions > 0, "dit.num_actions", self.num_actions, "must be > 0")
        _check(self.prompt_dim > 0, "dit.prompt_dim", self.prompt_dim, "must be > 0")
        _check(self.prompt_mode in PROMPT_MODES, "dit.prompt_mode", self.prompt_mode,
               f"must be one of {PROMPT_MODES}")
        _check(self.prompt_tokens > 0, "dit.prompt_tokens", self.prompt_tokens, "must be > 0")
        _check(self.rope_theta > 1, "dit.rope_theta", self.rope_theta, "must be > 1")
        _check(self.outcome_heads in OUTCOME_HEADS, "dit.outcome_heads", self.outcome_heads,
               f"must be one of {OUTCOME_HEADS}")
        _check(self.prediction in PREDICTIONS, "dit.prediction", self.prediction, f"must be one of {PREDICTIONS}")
        _check(not self.prev_frame or self.prediction == "x0", "dit.prediction", self.prediction,
               "must be 'x0' when dit.prev_frame is on (its copy path predicts the clean frame)")
        _check(self.prev_frame or not self.prev_copy_clean, "dit.prev_copy_clean", self.prev_copy_clean,
               "needs dit.prev_frame")
        _check(self.prev_frame or not self.prev_shift, "dit.prev_shift", self.prev_shift, "needs dit.prev_frame")
        _check(self.prev_frame or not self.player_surroundings, "dit.player_surroundings", self.player_surroundings,
               "needs dit.prev_frame")


@dataclass
class MemoryConfig:
    """Context layout: [sink frames | memory tokens | local window]."""

    policy: str = "evolving"
    """One of window, sink, compress, evolving, full."""
    rope: str = "unified_relative"
    """Temporal RoPE recipe: unified_relative (the paper's), absolute, window_relative."""
    chunk_frames: int = 1
    """Frames generated per step (1 = one frame of input lag)."""
    window_frames: int = 8
    """Local window W in frames, including the current chunk."""
    sink_frames: int = 1
    """First S frames kept forever (policies sink, compress, evolving)."""
    memory_frames: int = 2
    """Memory 'frames' Fm left of the window (evolving queries / compress slots)."""
    memory_tokens_per_frame: int = 16
    """Tokens per memory frame; must be a square (laid on a coarse grid for RoPE)."""
    encoder_layers: int = 2
    """Cross-attention layers of the evolving-memory encoder."""
    gate_bias: float = 2.0
    """Initial gate bias b: g = sigmoid(W [Q_old; Q~] + b) ~= 0.88 keeps memory at first."""
    bptt_updates: int = 4
    """Truncated BPTT: gradients flow through at most this many memory updates."""
    full_capacity: int = 512
    """Frames the `full` policy can hold (reference runs only)."""
    updates: bool = True
    """Evolving memory: False keeps the queries at their trained `query_init` forever
    (the paper's "no updates" ablation; same weights, memory never written)."""

    @property
    def memory_tokens(self) -> int:
        return self.memory_frames * self.memory_tokens_per_frame

    @property
    def max_temporal_id(self) -> int:
        """F_max: the largest temporal id of the unified recipe (the whole span)."""
        return self.sink_frames + self.memory_frames + self.window_frames - 1

    def validate(self) -> None:
        _check(self.policy in MEMORY_POLICIES, "memory.policy", self.policy,
               f"must be one of {MEMORY_POLICIES}")
        _check(self.rope in ROPE_RECIPES, "memory.rope", self.rope, f"must be one of {ROPE_RECIPES}")
        _check(self.chunk_frames >= 1, "memory.chunk_frames", self.chunk_frames, "must be >= 1")
        _check(self.window_frames >= 2 * self.chunk_frames
               and self.window_frames % self.chunk_frames == 0,
               "memory.window_frames", self.window_frames,
               f"must be a multiple of chunk_frames ({self.chunk_frames}) holding at least 2 chunks")
        _check(self.sink_frames >= 0 and self.sink_frames % self.chunk_frames == 0,
               "memory.sink_frames", self.sink_frames,
               f"must be >= 0 and a multiple of chunk_frames ({self.chunk_frames})")
        _check(self.memory_frames >= 1, "memory.memory_frames", self.memory_frames, "must be >= 1")
        side = math.isqrt(self.memory_tokens_per_frame)
        _check(self.memory_tokens_per_frame > 0 and side * side == self.memory_tokens_per_frame,
               "memory.memory_tokens_per_frame", self.memory_tokens_per_frame, "must be a perfect square")
        _check(self.encoder_layers >= 1, "memory.encoder_layers", self.encoder_layers, "must be >= 1")
        _check(self.bptt_updates >= 1, "memory.bptt_updates", self.bptt_updates, "must be >= 1")
        _check(self.full_capacity >= self.window_frames, "memory.full_capacity", self.full_capacity,
               "must be >= window_frames")


@dataclass
class SamplerConfig:
    """Few-step rectified-flow sampler."""

    steps: int = 2
    """Default denoising steps per frame (1-4 at play time)."""
    max_steps: int = 4
    """The most denoising steps a frame budget may spend on this model. More steps are not
    always better: a model tuned at 2 can drift faster at 3-4 (docs/RESULTS.md, issue 14)."""
    context_noise: float = 0.0
    """Noise level t_c at which a finished chunk is committed: its context pass writes the
    K/V of the chunk noised to t_c, and the next chunk reads it (dit.prev_frame) at that
    level. Training noises context to U(0, context_noise_max), so a model trained that way
    knows a level > 0 means "do not trust the fine detail": its own errors are then damped
    instead of copied forward (issue 14: 0.1 held `tiny` worlds for 256 frames, 0 did not)."""
    temperature: float = 1.0
    """Scale of the starting noise of each frame (inference only; training samples at 1).
    Below 1 trades variety for stability: a small, few-step model's frames keep less
    unremoved noise, so less error feeds back through the window."""

    guidance: float = 1.0
    """Classifier-free guidance scale g (issue 15). 1: off, one DiT pass a step; g != 1 also
    runs the step without the prompt (the empty prompt training's caption dropout teaches) and
    follows v_u + g (v_c - v_u): the prompt's pull, g times over, at twice the DiT's cost (the
    calibration and the frame budget time it as it is). Only the frame being drawn is guided;
    the window keeps the K/V it was committed with."""

    switch_guidance: float | None = None
    """Guidance scale for the `snap_hold` frames after a prompt change (None: `guidance`).
    A switch is where the prompt has to win over the previous frame and the window, which
    still show the old look; guided there only, a world pays the second DiT pass for those
    frames alone and its start is drawn as trained (issue 15: g 4 everywhere followed switches
    twice as often on the proxy seeds but lost start adherence on held-out paraphrases)."""

    snap: bool = False
    """Replace every generated token by its nearest code of the tokenizer's codebook (needs
    tokenizer.codebook_size > 0): frames are always made of real tiles, and errors below half
    a code's distance vanish in the frame they appear instead of feeding back (world/codebook.py)."""
    snap_hold: int = 0
    """Frames after a prompt change during which the world's frames are not snapped (0: always
    snap). The codebook holds every style's tiles, but a frame moves towards a new prompt in
    small steps, and each is snapped back onto the old style's codes: with the snap, a switch
    did not take (issue 15, docs/RESULTS.md). With `switch_guidance` the steps are large enough
    that 8 frames do: the snap then holds the new look in real tiles instead of a blur."""
    snap_keep: float = 0.0
    """With snap: a token takes the code one of its 3x3 neighbours had in the previous frame
    when that code is within (1 + snap_keep) x the squared distance of its nearest code
    (world.codebook.keep_neighbours); 0: the nearest code always. A hysteresis towards what
    the world already shows: an ambiguous token keeps a tile the camera moved in instead of
    flipping to whichever code is a hair closer (issue 14's eleventh session, snap_keep 2:
    tile validity 0.87 -> 0.94 at h1, 0.77 -> 0.95 at h64 on the proxy seeds, PSNR level)."""

    copy_gate: float = 0.3
    """With dit.copy_gate: a token is copied from the previous neighbour the gate finds likeliest
    right where that probability is >= this and >= the drawn tile's (`copy_gate.choose`); 0:
    wherever the copy is at least as likely right as the draw. Above 1: the gate is off (every
    token drawn and snapped). Worlds within snap_hold frames of a prompt change draw every
    token (the new look has to take). 0.3 (was 0.5): the copies the gate is 30-50% sure of are
    mostly objects the snap would lose (24 proxy seeds: objects at h64 / h256 0.03 / 0.04 ->
    0.08 / 0.08 for 0.1 dB; below 0.5 the comparison with the draw decides; docs/RESULTS.md,
    twentieth session)."""

    tile_map: bool = False
    """With the copy gate on: a token a move brings into view takes the code the world showed at
    that world position before, where it did (world/tile_map.py: the places the player left are
    there when it walks back; positions follow the gate's vote on the camera's move)."""

    @property
    def switch_scale(self) -> float:
        """The guidance scale of the `snap_hold` frames after a prompt change."""
        return self.switch_guidance if self.switch_guidance is not None and self.snap_hold else self.guidance

    def validate(self) -> None:
        _check(1 <= self.steps <= 64, "sampler.steps", self.steps, "must be in [1, 64]")
        _check(0.0 <= self.guidance <= 10.0, "sampler.guidance", self.guidance, "must be in [0, 10]")
        g = self.switch_guidance
        _check(g is None or (isinstance(g, (int, float)) and not isinstance(g, bool) and 0.0 <= g <= 10.0),
               "sampler.switch_guidance", g, "must be None or in [0, 10]")
        _check(self.steps <= self.max_steps <= 64, "sampler.max_steps", self.max_steps,
               f"must be in [sampler.steps = {self.steps}, 64]")
        _check(0.0 <= self.temperature <= 2.0, "sampler.temperature", self.temperature, "must be in [0, 2]")
        _check(0.0 <= self.context_noise < 1.0, "sampler.context_noise", self.context_noise,
               "must be in [0, 1)")
        _check(isinstance(self.snap_hold, int) and 0 <= self.snap_hold <= 100_000, "sampler.snap_hold",
               self.snap_hold, "must be an int in [0, 100000]")
        _check(0.0 <= self.snap_keep <= 100.0, "sampler.snap_keep", self.snap_keep, "must be in [0, 100]")
        _check(0.0 <= self.copy_gate <= 2.0, "sampler.copy_gate", self.copy_gate, "must be in [0, 2]")
        _check(isinstance(self.tile_map, bool), "sampler.tile_map", self.tile_map, "must be true or false")


@dataclass
class GameConfig:
    """What the checkpoint's frames are: which game made them and how it moved."""

    env: str = "teacher"
    """The game the data was recorded in: 'teacher' (EchoInfinity/Teacher-v0) or 'crafter'
    (EchoInfinity/Crafter-v0). It names the action vocabulary (`world.actions.game_actions`)
    and the real game that eval, World-v0 and play put beside the model."""
    motion: str = "smooth"
    """The teacher's motion mode: 'smooth' (2 px a frame) or 'tile' (one tile = one token a
    move). Everything that plays or measures the checkpoint (eval, World-v0, play, kiosk,
    --compare) runs the teacher in this mode."""
    view_pixels: int = 64
    """The teacher's view side in base pixels, the unit of recorded positions: one token
    spans view_pixels / tokenizer.grid_size of them (stage 2's seen-content mask)."""

    passability: bool = False
    """The checkpoint carries a table of which tiles stop a move, counted from its recordings
    (world/passability.py; `echo-infinity passability` adds it to a checkpoint, `train` fills it
    for a model that has it): with `sampler.snap`, a move key whose target tile blocks keeps the
    camera."""
    spawn: bool = False
    """The checkpoint carries a table of the collectibles new ground shows, counted from its
    recordings (world/spawn.py; filled where the passability table is): with `sampler.tile_map`, a
    token a move brings into view that the map does not know becomes a collectible (a gem) at the
    rate the recordings show one next to the tile beside it."""
    spawn_on: str = "drawn"
    """Which new tokens the spawn table may turn into collectibles: 'drawn', those the copy gate
    draws (the frames' figures are measured so); 'entered', every token that came into view from
    beyond the frame, also those the gate copies from a neighbour (about 3.6x the tokens: a dream
    walker meets a third of the teacher's new-ground gems instead of a seventh, at 0.1-0.3 dB of
    PSNR; PPO in World-v0 did not gain from it, docs/RESULTS.md, thirty-third session)."""
    spawn_gain: float = 1.0
    """Each counted spawn rate times this (a rate stays <= 1). The counted rate is what a tile's
    neighbour shows in the recordings; how many collectibles the dream's new ground holds also
    depends on `spawn_on` and on which codes the dream draws beside its edge, so `echo-infinity
    passability --calibrate-spawn` fits this gain on calibration seeds until a walker's keys show
    as many gems in the dream's new ground as in the teacher's (envs/spawn_gain.py)."""
    hazards: bool = False
    """The passability table also counts which tiles end an episode when walked onto (world/
    passability.py; `echo-infinity passability --hazards`): a move onto one ends the episode (done
    probability 1), where the done head misses the hazards of the model's own world."""
    restyle: tuple[int, ...] = ()
    """The sizes of the style fields a prompt names (the teacher: 6 biomes, 4 times of day, 4
    weathers): the checkpoint carries a restyle (world/restyle.py; `echo-infinity restyle` adds it),
    and a prompt switch repaints every token the world keeps in the new look before the window is
    re-cached. (): a switch reaches only the frames made afterwards."""

    def fixed_tokens(self, grid: int) -> list[int]:
        """Token indices (row-major on the grid x grid token grid) drawn in the same place
        whatever the camera does: the player's tile, and Crafter's two status-bar rows. The
        copy path's move labels leave them in place (`world.train.shift_head_loss`)."""
        if self.env == "crafter":  # envs/crafter.py: 8x6 world tiles, the player at row 3, column 4
            _check(grid == 8, "tokenizer.grid_size", grid, "must be 8 for a Crafter model (one token a tile)")
            return [3 * grid + 4, *range(6 * grid, grid * grid)]
        return [(grid // 2) * grid + grid // 2]

    def validate(self) -> None:
        _check(self.env in GAME_ACTIONS, "game.env", self.env, f"must be one of {tuple(GAME_ACTIONS)}")
        _check(self.motion in MOTIONS, "game.motion", self.motion, f"must be one of {MOTIONS}")
        _check(self.view_pixels > 0, "game.view_pixels", self.view_pixels, "must be > 0")
        _check(isinstance(self.passability, bool), "game.passability", self.passability, "must be true or false")
        _check(isinstance(self.spawn, bool), "game.spawn", self.spawn, "must be true or false")
        _check(isinstance(self.hazards, bool), "game.hazards", self.hazards, "must be true or false")
        _check(isinstance(self.spawn_gain, (int, float)) and not isinstance(self.spawn_gain, bool)
               and math.isfinite(self.spawn_gain) and self.spawn_gain > 0, "game.spawn_gain", self.spawn_gain,
               "must be a finite number > 0")
        _check(self.spawn_on in SPAWN_ON, "game.spawn_on", self.spawn_on, f"must be one of {SPAWN_ON}")
        _check(all(isinstance(n, int) and n >= 2 for n in self.restyle), "game.restyle", self.restyle,
               "must list each style field's number of values (each >= 2), or be empty")


@dataclass
class ModelConfig:
    """Everything needed to build a `WorldModel` (saved as config.json)."""

    name: str = "tiny"
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    game: GameConfig = field(default_factory=GameConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        _check(isinstance(self.name, str), "name", self.name, "must be a string")
        self.tokenizer.validate()
        self.dit.validate()
        self.memory.validate()
        self.sampler.validate()
        _check(not self.sampler.snap or self.tokenizer.codebook_size > 0, "sampler.snap", self.sampler.snap,
               "needs a codebook (tokenizer.codebook_size > 0)")
        _check(not self.dit.copy_gate or self.sampler.snap, "dit.copy_gate", self.dit.copy_gate,
               "needs sampler.snap (a copy is a code of the codebook)")
        self.game.validate()
        _check(not self.game.passability or (self.tokenizer.codebook_size > 0 and self.game.motion == "tile"),
               "game.passability", self.game.passability,
               "needs a codebook (tokenizer.codebook_size > 0) and game.motion 'tile' (a move walks onto one token)")
        _check(not self.game.spawn or (self.game.passability and self.sampler.tile_map), "game.spawn", self.game.spawn,
               "needs game.passability (counted with its table) and sampler.tile_map (the places new ground lies at)")
        _check(not self.game.hazards or self.game.passability, "game.hazards", self.game.hazards,
               "needs game.passability (the table it is counted with)")
        _check(not self.game.restyle or self.tokenizer.codebook_size > 0, "game.restyle", self.game.restyle,
               "needs a codebook (tokenizer.codebook_size > 0): it translates codes")
        n = len(GAME_ACTIONS[self.game.env])
        _check(self.dit.num_actions >= n, "dit.num_actions", self.dit.num_actions,
               f"must cover game.env {self.game.env!r}'s {n} actions")
        side = math.isqrt(self.memory.memory_tokens_per_frame)
        _check(self.tokenizer.grid_size % side == 0, "memory.memory_tokens_per_frame",
               self.memory.memory_tokens_per_frame,
               f"its side ({side}) must divide the token grid side ({self.tokenizer.grid_size})")

    def replace(self, **sections: dict[str, Any]) -> "ModelConfig":
        """Copy with some fields changed, e.g. `cfg.replace(memory={"policy": "sink"})`."""
        d = self.to_dict()
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(d.get(key), dict):
                d[key].update(value)
            else:
                d[key] = value
        return ModelConfig.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for section in d.values():  # as JSON has them (tokenizer.channels, game.restyle)
            if isinstance(section, dict):
                section.update({k: list(v) for k, v in section.items() if isinstance(v, tuple)})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        if not isinstance(d, dict):
            raise ValueError(f"model config must be a JSON object, got {type(d).__name__}")
        sections = {"tokenizer": TokenizerConfig, "dit": DiTConfig,
                    "memory": MemoryConfig, "sampler": SamplerConfig, "game": GameConfig}
        _reject_unknown(d, {"name", *sections}, "")
        kwargs: dict[str, Any] = {}
        if "name" in d:
            kwargs["name"] = d["name"]
        for key, sub_cls in sections.items():
            if key in d:
                kwargs[key] = _build_section(sub_cls, d[key], key)
        return cls(**kwargs)


def _build_section(sub_cls: type, d: Any, prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"config field '{prefix}' must be an object, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(sub_cls)}
    _reject_unknown(d, set(fields), prefix + ".")
    kwargs = {}
    for key, value in d.items():
        default = fields[key].default
        kwargs[key] = _coerce(value, default, f"{prefix}.{key}")
    return sub_cls(**kwargs)


def _coerce(value: Any, default: Any, name: str) -> Any:
    """Check a JSON value against the type of the field's default."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple) or default is dataclasses.MISSING:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = True
    if not ok:
        raise ValueError(f"config field '{name}' has a bad value {value!r} "
                         f"(expected {type(default).__name__})")
    return value


def _reject_unknown(d: dict, known: set[str], prefix: str) -> None:
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown config field(s) {[prefix + k for k in unknown]}; "
                         f"known: {sorted(prefix + k for k in known)}")


def _check(ok: bool, name: str, value: Any, why: str) -> None:
    if not ok:
        raise ValueError(f"config field '{name}' = {value!r} {why}")


# Named presets (DiT-style factory table). `tiny` is the CPU default.
PRESETS: dict[str, dict[str, Any]] = {
    # temperature chosen on teacher seeds 501-504 (not eval seeds): PSNR at frame 128
    # 13.2 dB at 1.0, 16.8 at 0.25 for the shipped checkpoint (docs/RESULTS.md)
    # max_steps 2: on proxy seeds, frame-64 PSNR 14.7 / 10.6 / 9.0 dB at 2 / 3 / 4 steps (issue 14)
    # context_noise 0.1: proxy seeds, frame-256 PSNR 13.7 / 22.9 / 22.4 / 22.3 dB at 0 / 0.1 / 0.15 / 0.2
    # codebook 4096 + snap: proxy tile validity h1-h64 0.49-0.20 -> 0.61-0.73, the player in every
    # world to h64 (0.75 before); 1024 codes gave 0.4 dB less at h1 (issue 14, docs/RESULTS.md)
    "tiny": {"tokenizer": {"codebook_size": 4096},
             # issue 15: a switch is guided (g 4) and drawn unsnapped for 8 frames, then snapped onto
             # the new look's tiles (proxy seeds: followed within 16 frames 27% -> 59%, RESULTS.md)
             "sampler": {"temperature": 0.25, "max_steps": 2, "context_noise": 0.1, "snap": True, "snap_hold": 8,
                         "switch_guidance": 4.0},
             # issue 14: tile-step motion and the direct previous-frame path (dit.prev_copy_clean won
             # the learn bench but its full run drifted by h64: off until stage 2 holds it, RESULTS.md)
             "dit": {"prev_frame": True, "prediction": "x0"}, "game": {"motion": "tile"}},
    # issue 18: Crafter at 64x64, one 8-px tile per token (envs.crafter), its 17 actions
    # sampler.tile_map: a walk back in the play window finds what it left; held-out figures level
    # (teacher forcing 33.09 -> 33.06 dB, h64 17.23 -> 17.27); off on `tiny` (its heads, RESULTS.md)
    "crafter-tiny": {"tokenizer": {"codebook_size": 4096},
                     "sampler": {"temperature": 0.25, "max_steps": 2, "context_noise": 0.1, "snap": True,
                                 "snap_hold": 32, "tile_map": True},
                     "dit": {"prev_frame": True, "prediction": "x0", "num_actions": 17},
                     "game": {"env": "crafter", "motion": "tile"}},
    "small": {
        "tokenizer": {"image_size": 128, "channels": [32, 64, 128], "latent_channels": 16},
        "dit": {"dim": 384, "depth": 8, "heads": 6, "prompt_mode": "cross_attention",
                "prev_frame": True, "prediction": "x0"},
        "memory": {"window_frames": 12, "memory_frames": 2, "memory_tokens_per_frame": 16},
        # 128px -> latent 16x16x16 -> 64 tokens of 64 values
    },
    "base": {
        "tokenizer": {"image_size": 256, "channels": [64, 128, 256], "latent_channels": 16},
        "dit": {"dim": 768, "depth": 12, "heads": 12, "prompt_mode": "cross_attention",
                "prompt_tokens": 32, "prev_frame": True, "prediction": "x0"},
        "memory": {"chunk_frames": 3, "window_frames": 12, "sink_frames": 3,
                   "memory_frames": 2, "memory_tokens_per_frame": 64},
        # 256px -> latent 32x32x16 -> 256 tokens of 64 values; chunks of 3 frames (paper)
    },
}


def from_preset(name: str, **overrides: dict[str, Any]) -> ModelConfig:
    """Build a preset config, optionally overriding sections:
    `from_preset("tiny", memory={"policy": "sink"})`."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    d = ModelConfig().to_dict()
    for key, value in PRESETS[name].items():
        d[key].update(value)
    for key, value in overrides.items():
        if key not in d or not isinstance(d[key], dict):
            raise ValueError(f"unknown config section {key!r} in overrides")
        if not isinstance(value, dict):
            raise ValueError(f"override for section {key!r} must be a dict")
        d[key].update(value)
    d["name"] = name
    return ModelConfig.from_dict(d)
