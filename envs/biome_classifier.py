"""A small CNN that names the biome of a 64x64 teacher frame (the judge of prompt adherence).

`echo-infinity eval` asks "does the generated world look like the biome the
prompt asked for?". No person labels frames, so a classifier trained on the
teacher's own frames answers instead: the teacher renders every style exactly,
and its biome is known.

Data: teacher episodes with a style set at reset (the biome cycles over
`envs.style.BIOMES` so classes are balanced, time of day and weather are
random), an explore walk, one frame kept every `stride` frames. The teacher
seeds come from `CLASSIFIER_SEED_BASE` upwards, a range disjoint from the
evaluation seeds and the training recordings. Held-out accuracy is measured on
episodes of other seeds. Frames are augmented (blur, noise) so the judge looks
at colour and texture, not at the sharpness that a generated frame lacks.

Training is deterministic (seeded init, shuffling and augmentation; one
thread) and takes ~3 min on one CPU core (~9 s for the `QUICK` settings). Weights are cached as safetensors
under a cache dir, named by a hash of the settings and of the teacher's
source files, so a change to either retrains.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSIFIER_SEED_BASE = 70_000
"""Teacher seeds of the classifier's frames: 70_000 + i (eval seeds start at 90_000)."""
_VERSION = "1"  # bump when the recipe below changes in a way the settings do not show


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything that decides the classifier's weights (hashed into the cache key)."""

    resolution: int = 64
    """Frame size (the model's tokenizer.image_size)."""
    train_episodes: int = 2304
    """Teacher episodes for training: each of the 96 styles 24 times (biome = i % 6). Fewer (576,
    the first judge) left it 91% right on unseen worlds and 0-6% on some foggy looks."""
    heldout_episodes: int = 192
    """Episodes of other seeds for the held-out accuracy (each style twice)."""
    frames_per_episode: int = 2
    """Frames kept per episode (few: frames of one episode are alike; new worlds are not)."""
    stride: int = 6
    """Teacher frames between kept frames (the walk moves 12 px in 6 frames)."""
    width: int = 32
    """Channels of the first conv; doubled at each of the 3 stride-2 stages."""
    epochs: int = 20
    batch: int = 32
    lr: float = 1e-2
    seed: int = 0

    def key(self) -> str:
        """Cache key: settings + recipe version + the teacher's source code."""
        from envs import style, teacher, terrain, tiles

        h = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode() + _VERSION.encode())
        for module in (teacher, terrain, tiles, style):
            h.update(inspect.getsource(module).encode())
        return h.hexdigest()[:16]


class BiomeCNN(nn.Module):
    """uint8 frames [B, H, W, 3] -> biome logits [B, len(BIOMES)].

    Halve the frame (colour and texture survive), three conv-BN-GELU stages,
    global average pool: where a tile sits does not matter, what it looks like does.
    """

    def __init__(self, classes: int, width: int = 16):
        super().__init__()
        w = width

        def stage(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out), nn.GELU()]

        self.net = nn.Sequential(
            nn.AvgPool2d(2),                           # [B, 3, H/2, W/2]
            *stage(3, w), nn.MaxPool2d(2),             # [B, w, H/4, W/4]
            *stage(w, 2 * w), nn.MaxPool2d(2),         # [B, 2w, H/8, W/8]
            *stage(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),     # [B, 4w]
            nn.Linear(4 * w, classes),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [B, 3, H, W] in [-1, 1]
        return self.net(x)


class BiomeClassifier:
    """A trained `BiomeCNN` with its held-out accuracy."""

    def __init__(self, net: BiomeCNN, cfg: ClassifierConfig, accuracy: float):
        self.net, self.cfg, self.accuracy = net.eval(), cfg, accuracy

    @property
    def biomes(self) -> tuple[str, ...]:
        from envs.style import BIOMES

        return BIOMES

    @torch.no_grad()
    def predict(self, frames: np.ndarray | torch.Tensor, batch: int = 256) -> np.ndarray:
        """uint8 [N, H, W, 3] -> biome index int64 [N] (into envs.style.BIOMES)."""
        x = torch.as_tensor(np.asarray(frames))
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [N, H, W, 3], got {x.dtype} {list(x.shape)}")
        out = [self.net(x[i:i + batch]).argmax(-1) for i in range(0, len(x), batch)]
        return torch.cat(out).numpy() if out else np.zeros(0, np.int64)


def teacher_frames(cfg: ClassifierConfig, first: int, episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames of episodes `first .. first+episodes-1` -> (uint8 [N, R, R, 3], biome int64 [N]).

    Episode i uses teacher seed CLASSIFIER_SEED_BASE + i and biome BIOMES[i % 6].
    """
    from envs.policies import make_policy
    from envs.style import BIOMES, TIMES_OF_DAY, WEATHERS, Style
    from envs.teacher import TeacherEnv

    env = TeacherEnv(resolution=cfg.resolution)
    frames, labels = [], []
    for i in range(first, first + episodes):
        seed = CLASSIFIER_SEED_BASE + i
        rng = np.random.default_rng(seed)
        look = i // len(BIOMES) % (len(TIMES_OF_DAY) * len(WEATHERS))  # every (time, weather) in turn
        style = Style(BIOMES[i % len(BIOMES)], TIMES_OF_DAY[look // len(WEATHERS)], WEATHERS[look % len(WEATHERS)])
        _, info = env.reset(seed=seed, options={"style": style})
        policy = make_policy("explore", env, rng, slip_prob=0.0)
        policy.reset(info)
        for k in range(cfg.frames_per_episode * cfg.stride):
            obs, _, terminated, _, info = env.step(policy.act(info))
            if k % cfg.stride == cfg.stride - 1:
                frames.append(obs)
                labels.append(i % len(BIOMES))
            if terminated:
                break
    env.close()
    return np.stack(frames), np.asarray(labels, np.int64)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> uint8, half blurred (3x3 or 5x5 box), all with N(0, <=8) noise."""
    B = x.shape[0]
    f = x.permute(0, 3, 1, 2).float()  # [B, 3, H, W]
    blur3 = F.avg_pool2d(f, 3, 1, 1, count_include_pad=False)
    blur5 = F.avg_pool2d(f, 5, 1, 2, count_include_pad=False)
    pick = torch.randint(0, 4, (B, 1, 1, 1), generator=gen)  # 0, 1: sharp; 2: 3x3; 3: 5x5
    f = torch.where(pick == 2, blur3, torch.where(pick == 3, blur5, f))
    f = f + torch.randn(f.shape, generator=gen) * torch.rand(B, 1, 1, 1, generator=gen) * 8.0
    return f.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1)


def train_classifier(cfg: ClassifierConfig, progress: bool = False) -> BiomeClassifier:
    """Train on teacher frames, measure accuracy on held-out episodes (deterministic)."""
    from tqdm import tqdm

    from envs.style import BIOMES

    x_train, y_train = teacher_frames(cfg, 0, cfg.train_episodes)
    x_test, y_test = teacher_frames(cfg, cfg.train_episodes, cfg.heldout_episodes)
    x_train, y_train = torch.from_numpy(x_train), torch.from_numpy(y_train)
    torch.manual_seed(cfg.seed)
    net = BiomeCNN(len(BIOMES), cfg.width)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    n = len(x_train)
    total = cfg.epochs * ((n + cfg.batch - 1) // cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=total)
    bar = tqdm(total=total, desc="biome classifier", disable=not progress, leave=False)
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, cfg.batch):
            idx = order[i:i + cfg.batch]
            loss = F.cross_entropy(net(_augment(x_train[idx], gen)), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    bar.close()
    clf = BiomeClassifier(net, cfg, 0.0)
    clf.accuracy = float((clf.predict(x_test) == y_test).mean())
    return clf


def load_or_train(cfg: ClassifierConfig, cache_dir: str | Path | None, progress: bool = False) -> BiomeClassifier:
    """The cached classifier for `cfg` (cache_dir/biome_classifier_<key>.safetensors), else train and cache it.

    cache_dir None: always train, write nothing.
    """
    from safetensors.torch import save_file

    from envs.style import BIOMES
    from world.checkpoint import CheckpointError, check_tensors, read_safetensors, safetensors_header

    path = None if cache_dir is None else Path(cache_dir) / f"biome_classifier_{cfg.key()}.safetensors"
    if path is not None and path.is_file():
        try:
            accuracy = float(safetensors_header(path)["__metadata__"]["accuracy"])
            tensors = read_safetensors(path)
            net = BiomeCNN(len(BIOMES), cfg.width)
            check_tensors(tensors, net.state_dict(), str(path), "the biome classifier")
            net.load_state_dict(tensors)
            return BiomeClassifier(net, cfg, accuracy)
        except (CheckpointError, KeyError, TypeError, ValueError) as e:  # only a cache: train again, overwrite it
            warnings.warn(f"the cached biome classifier is unusable ({type(e).__name__}: {e}); "
                          f"training it again into {path}", stacklevel=2)
    clf = train_classifier(cfg, progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in clf.net.state_dict().items()}
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata={"accuracy": repr(clf.accuracy),
                                               "config": json.dumps(asdict(cfg)), "biomes": ",".join(BIOMES)})
        tmp.replace(path)
    return clf


QUICK = ClassifierConfig(train_episodes=192, heldout_episodes=96, width=16, epochs=10)
"""Smaller data for smoke runs (`eval --quick`, tests): still far above chance."""


def config_for(resolution: int, quick: bool = False) -> ClassifierConfig:
    return replace(QUICK if quick else ClassifierConfig(), resolution=resolution)
