"""The training run's settings (saved as trainer.json); torch-free, so the CLI can build
its `train` flags from it without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

STAGES = ("tokenizer", "stage1", "stage2")
STAGE_PREFIX = {"tokenizer": "tok", "stage1": "s1", "stage2": "s2"}  # field prefix of each stage
PRECISIONS = ("auto", "fp32", "bf16")  # world.precision
S2_TRAIN = ("all", "heads", "gate", "memory")


@dataclass
class TrainConfig:
    """Everything a training run needs besides data; saved as trainer.json."""

    preset: str = "tiny"
    """Model preset (world.config.PRESETS)."""
    model: dict = field(default_factory=dict)
    """Overrides of the preset, by section: {"dit": {"depth": 2}} (JSON config only)."""
    out: str = "runs/train"
    """Run directory: checkpoints, metrics.jsonl, loss curves."""
    init_from: str = ""
    """A trained checkpoint directory to fine-tune: its weights and config replace the
    preset's (preset is then ignored), the tokenizer and stage 1 count as done, and only
    stage 2 runs, from its step 0 with its own warm-up and schedule. `model` overrides then
    change the checkpoint's config: weights of the same name and shape carry over, new ones
    start fresh (`WorldModel.warm_start`, logged as "warm_start" in metrics.jsonl)."""
    seed: int = 0
    text_encoder: str = "minilm"
    """'minilm' (the real sentence encoder) or 'hash' (tests only)."""
    tok_steps: int = 1500
    tok_batch: int = 32
    tok_lr: float = 2e-3
    tok_cpu_minutes: float = 0.0
    """Stop a stage once this process has spent this much CPU time in it (0: run all its
    steps); the LR schedule then follows the share of the budget spent. Same for s1_, s2_."""
    codebook_frames: int = 8192
    """Recorded frames whose tokens the tile codebook is fitted on (k-means, once, right after
    the tokenizer stage; models with tokenizer.codebook_size > 0)."""
    codebook_iters: int = 15
    """k-means iterations of that fit."""
    decoder_steps: int = 8000
    """Steps of decoder-only training right after the codebook fit, the encoder frozen
    (world.train.tune_decoder; 0: none)."""
    decoder_lr: float = 1e-3
    decoder_snap_share: float = 0.5
    """Share of those frames whose tokens pass through the codebook, as generated frames do."""
    decoder_detail_weight: float = 0.0
    """Extra weight of high-contrast pixels in that tune's loss (`FrameTokenizer.reconstruction_loss`):
    sprite edges, which a plain MSE smooths over. 0: plain MSE."""
    s1_steps: int = 1500
    s1_batch: int = 8
    s1_lr: float = 6e-4
    s1_cpu_minutes: float = 0.0
    s1_streams: int = 2
    """Stage 1 layout: 2 = a clean (context-noised) copy of the clip beside the noisy one
    (teacher forcing, every frame run twice); 1 = diffusion forcing, one noisy copy whose
    frames are each other's context (half the tokens)."""
    s1_clean_share: float = 0.3
    """s1_streams = 1: share of frames drawn near-clean (t ~ U(0, context_noise_max)), so
    clean context, as at play time, is common in training."""
    s2_steps: int = 300
    s2_batch: int = 4
    s2_clip: int = 32
    """Stage 2 clip length in frames (several windows: memory has to carry the rest)."""
    s2_free_frames: int = 0
    """Stage 2: the last this-many frames of every clip run free, on the model's own samples
    as context (self_rollout still applies before them), and are scored against the truth
    only where the truth is predictable: tokens showing a place the model itself first drew
    during the free run are left out (world.train.free_run_mask). 0: off."""
    s2_switch_clips: int = 0
    """Stage 2 prompt switches (issue 15): > 0 follows the captions frame by frame, a change
    mid-clip being a `set_prompt` with the window re-cached, as at play time, and draws this
    many extra clips around every caption change in the recordings (a change falls in ~6% of
    32-frame clips otherwise). 0: each clip keeps its last frame's caption throughout."""
    s2_train: str = "all"
    """Stage 2 trains 'all' the DiT's weights, or only the reward and done 'heads' with the
    rest frozen: the world drawn stays bit for bit the same, and a step costs the forward
    pass (issue 17: new heads on a finished world model, `--model` + `--init-from`), or only
    the copy 'gate' (dit.copy_gate, world/copy_gate.py) on frames sampled as at play time, or
    only the 'memory' (the policy's weights: the evolving memory's queries, update layers, gate and
    read projections) through the frozen DiT's loss, as 'all' computes it (issue 14's revisit)."""
    s2_rare_power: float = 0.0
    """Stage 2: weigh each token's loss by p^-power, p the share of the batch's tokens on its
    nearest codebook code (world.train.rarity_weights; models with a codebook). Bare ground
    is most of every frame, so an unweighted loss is cheapest when the trees, rocks and lava
    fade into ground (issue 14). 0: off, every token weighs the same."""
    fixed_change_weight: float = 1.0
    """Stage-2 loss weight of the fixed tokens (`GameConfig.fixed_tokens`: the player's tile,
    Crafter's status bar) on the frames where their code changes from the recorded frame before:
    a count ticking down, an item picked up, the player turning. On Crafter they are ~0.2% of
    the tokens, and given the true past the model held the old bar on 99% of the frames where
    the bar changed (issue 18, docs/RESULTS.md). 1: every token weighs the same."""
    s2_lr: float = 2e-4
    s2_cpu_minutes: float = 0.0
    mix_lr_mult: float = 1.0
    """Learning-rate multiplier of the previous-frame path's mix logits (`dit.prev.mix_bias`,
    in logit units, started at +4 on "copy in place"; with dit.prev_shift the keep gate's
    bias `dit.prev.keep_head.bias`): at the base LR Adam moves them ~1e-4
    a step, so in ~2,000 steps they never left their start and the copy path stayed a blur
    (issue 14: the shipped `tiny` puts a median 0.30 on its best neighbour). 1 is the
    recipe `make train` runs; 100 with copy_loss_weight 1 won the learn bench (docs/RESULTS.md).
    The zero-initialised player-surroundings map (`dit.surround`) is in the same group: at the
    base LR a warm start moved it by at most 0.01 in 28 CPU-minutes."""
    clock_lr_mult: float = 1.0
    """Learning-rate multiplier of the clock embedding (`dit.clock`, zero-initialised): one of
    its rows is read only at its phase of its period, and at the base LR Adam moves it ~1e-4 a
    step (issue 18, docs/RESULTS.md)."""
    prompt_lr_mult: float = 1.0
    """Learning-rate multiplier of the prompt's projection into the DiT (`dit.prompt_proj`, and
    `dit.prompt_null` with cross-attention prompts). The context shows the biome in every frame
    but a clip's first, so the prompt is redundant almost everywhere and at the base LR the
    projection barely leaves its start: the shipped `tiny` draws the same pink haze from every
    prompt with no start frame, its six biomes closer together than the wording within one
    (issue 15, docs/RESULTS.md). 1: the recipe before this."""
    copy_loss_weight: float = 0.0
    """Weight of an auxiliary stage-1 loss on the previous-frame path's copy alone (its mix of
    the 9 neighbours against the clean frame, in world.train.Stage1Loss): the mix then learns
    to pick the shifted neighbour itself instead of being left to a residual that already
    covers it (0: off, the recipe before this)."""
    shift_loss_weight: float = 0.1
    """Weight of the shift head's cross-entropy against the teacher's camera move (models
    with `dit.prev_shift`; stages 1 and 2). The copy itself is trained with the true move,
    so the residual learns on exact copies; sampling takes the head's argmax."""
    mix_loss_weight: float = 0.0
    """Weight of a cross-entropy on the per-token mix of the previous-frame path (models without
    `dit.prev_shift`; stages 1 and 2): every token but the player's should copy the neighbour the
    camera's true move brings into place (`shift_labels`; the centre on NOOPs and blocked moves,
    weighted by `shift_blocked_weight`). The flow loss alone left the shipped mix a blend (a median
    0.30 on its best neighbour) that moves the view on 70% of blocked moves (issue 14). 0: off."""
    shift_blocked_weight: float = 1.0
    """Weight of blocked moves (a move action, the camera in place: the player walked into an
    obstacle) in the shift head's loss. They are ~7% of the recorded moves, and a head that
    follows the action alone is right on the rest: the shift arm picked the camera's move on
    100% of moved and NOOP steps of a fresh recording but on 21% of its blocked ones, and a
    wrong shift moves a world that stands still. 10 lifts that to 69% at 93% on moved steps,
    the rollouts no better (docs/RESULTS.md, issue 14's seventh session); 1 is as before."""
    warmup: int = 100
    """Linear LR warm-up steps at the start of every stage, then cosine decay to 10%."""
    cache_latents: bool = True
    """Encode each recorded frame once after the tokenizer stage (world.train.LatentCache);
    False encodes every clip again (the recipe before issue 14)."""
    caption_dropout: float = 0.1
    """Share of clips trained with the empty prompt (unconditional)."""
    context_noise_max: float = 0.1
    """Context frames are noised to t ~ U(0, this): robustness to imperfect own frames."""
    self_rollout: float = 0.3
    """Stage 2: share of frames whose context is the model's own 2-step sample."""
    self_rollout_temperature: float = 1.0
    """Stage 2: scale of the starting noise of those own samples. Play samples at the
    checkpoint's `sampler.temperature` (0.25 at `tiny`); 1 draws them from the full noise."""
    revisit_weight: float = 3.0
    """Stage 2: loss weight of frames that return to a place last seen before the window."""
    reward_weight: float = 0.5
    done_weight: float = 0.1
    event_weight: float = 1.0
    """Loss weight of the frames with a gem pickup (reward head) or a hazard end (done head)
    against the others' 1 (world.train.head_losses). Raising it only lifted the pooled reward
    head everywhere (issue 17); classifier heads (dit.outcome_heads 'centre') fire above
    probability 0.5, so a weight W moves that line to a true probability of ~1 / (1 + W)."""
    grad_clip: float = 1.0
    precision: str = "fp32"
    """Training arithmetic: 'bf16' autocast (weights, optimizer and losses stay fp32), 'fp32',
    or 'auto': bf16 only where this machine's bf16 matmul is measured >= 1.5x its fp32 one
    (native AMX / AVX-512 BF16; emulated bf16 made a step 3.9x slower). world.precision.
    fp32 by default: on an AVX-512 BF16 core (bf16 matmul 4.6x fp32) autocast sped the
    tokenizer up 1.7x but stage 1 only 2% and slowed stage 2 by 11% (`tiny`'s small ops do
    not gain; docs/RESULTS.md, issue 14's eighth session)."""
    log_every: int = 20
    ckpt_every: int = 250

    def validate(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
                raise ValueError(f"train config {f.name} must be >= 0, got {v}")
        if self.s1_streams not in (1, 2):
            raise ValueError(f"train config s1_streams must be 1 or 2, got {self.s1_streams}")
        if self.self_rollout_temperature > 2:
            raise ValueError(f"train config self_rollout_temperature must be in [0, 2], got {self.self_rollout_temperature}")
        for name in ("caption_dropout", "self_rollout", "context_noise_max", "s1_clean_share", "decoder_snap_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"train config {name} must be in [0, 1], got {getattr(self, name)}")
        if self.s2_train not in S2_TRAIN:
            raise ValueError(f"train config s2_train must be one of {S2_TRAIN}, got {self.s2_train!r}")
        if self.s2_free_frames > self.s2_clip:
            raise ValueError(f"train config s2_free_frames ({self.s2_free_frames}) must be <= s2_clip ({self.s2_clip})")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train config precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.text_encoder not in ("minilm", "hash"):
            raise ValueError(f"text_encoder must be 'minilm' or 'hash', got {self.text_encoder!r}")
