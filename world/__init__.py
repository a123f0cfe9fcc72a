"""Echo-Infinity world model: causal video DiT with evolving memory.

`world` imports nothing from runtime/envs/engines/demos. The text encoder
(`world.text.TextEncoder`) loads its weights lazily, on first construction.
The model names below load on first use, so torch-free modules (`world.config`,
`world.train_config`) import without torch (the CLI's `--help` stays fast).
`CheckpointError` (a ValueError) is what every loader of a user's weight file
raises for a bad one (world/checkpoint.py).
"""

from importlib import import_module

from .config import PRESETS, ModelConfig, from_preset

_LAZY = {"WorldModel": ".model", "build_model": ".model", "StepResult": ".model", "WorldState": ".state",
         "CheckpointError": ".checkpoint"}

__all__ = ["ModelConfig", "from_preset", "PRESETS", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'world' has no attribute {name!r}")
