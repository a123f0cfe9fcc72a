"""Echo-Infinity world model: causal video DiT with evolving memory.

`world` imports nothing from runtime/envs/engines/demos. The text encoder
(`world.text.TextEncoder`) loads its weights lazily, on first construction.
"""

from .config import ModelConfig, from_preset, PRESETS
from .model import StepResult, WorldModel, build_model
from .state import WorldState

__all__ = ["ModelConfig", "from_preset", "PRESETS", "WorldModel", "build_model", "StepResult", "WorldState"]
