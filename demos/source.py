"""Frame sources: what the play window shows, behind one small protocol.

The window (``demos/play.py``) only talks to a :class:`FrameSource`; it never
imports the game or the model. Today the one source is :class:`TeacherSource`,
the procedural teacher game of ``envs/teacher.py`` (ground truth, no network).
The world-model session of ``runtime/`` plugs in later as a second source with
the same calls, plus the optional save/load/rewind of :class:`SnapshotSource`
that F5/F9/Backspace use, without touching the UI loop (the layering of DIAMOND's
``envs/world_model_env.py`` -> ``game/game.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

# The shared Discrete(6) action set of the teacher and the world model.
from envs.teacher import ACTION_MEANINGS, DOWN, LEFT, NOOP, RIGHT, UP, USE  # noqa: F401  (re-exported)

SOURCES = ("teacher",)  # `model` joins when the world-model session lands



@runtime_checkable
class FrameSource(Protocol):
    """A steppable world that returns RGB frames.

    Frames are ``uint8 [R, R, 3]`` at the source's ``resolution``; ``info`` is a
    free dict the HUD reads through :meth:`hud_fields`.
    """

    name: str
    resolution: int
    can_snapshot: bool  # True for a SnapshotSource (F5 save, F9 load, Backspace rewind)

    def reset(self, seed: int, prompt: str | None = None) -> np.ndarray:
        """Start a fresh world; returns its first frame."""

    def step(self, action: int) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        """Advance one frame: ``(frame, reward, done, info)``."""

    def set_prompt(self, text: str) -> None:
        """Change the world's style live; raise ``ValueError`` on a bad prompt."""

    def hud_fields(self, info: dict[str, Any]) -> list[tuple[str, str]]:
        """Source-specific HUD lines (label, value) for the latest ``info``."""

    def close(self) -> None:
        """Release whatever the source holds; safe to call twice."""


@runtime_checkable
class SnapshotSource(FrameSource, Protocol):
    """A source whose world can be saved, loaded and rewound (``can_snapshot = True``).

    The world-model session implements these (its state is constant-size); the
    window binds them to F5, F9 and Backspace.
    """

    def save(self, path: Path) -> Path:
        """Write the world state to ``path``; returns the file written."""

    def load(self, path: Path) -> np.ndarray:
        """Restore a state written by :meth:`save`; returns the frame to show."""

    def rewind(self, seconds: float) -> np.ndarray:
        """Go back about ``seconds`` of play; returns the frame to show."""


class TeacherSource:
    """The teacher game (``envs.teacher.TeacherEnv``) as a frame source."""

    name = "teacher"
    can_snapshot = False  # save/load/rewind come with the world-model session

    def __init__(self, resolution: int = 64):
        from envs.teacher import TeacherEnv

        self.resolution = resolution
        self.env = TeacherEnv(render_mode="rgb_array", resolution=resolution)
        self.info: dict[str, Any] = {}

    def reset(self, seed: int, prompt: str | None = None) -> np.ndarray:
        options = {"prompt": prompt} if prompt else None
        obs, self.info = self.env.reset(seed=seed, options=options)
        return obs

    def step(self, action: int) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated:
            info.setdefault("end_reason", _end_reason(info))
        elif truncated:
            info.setdefault("end_reason", "Time is up")
        self.info = info
        return obs, float(reward), bool(terminated or truncated), info

    def set_prompt(self, text: str) -> None:
        self.env.set_style(text)

    def hud_fields(self, info: dict[str, Any]) -> list[tuple[str, str]]:
        fields = []
        if "position" in info:
            x, y = info["position"]
            fields.append(("position", f"{x}, {y}"))
        if "gems" in info:
            fields.append(("gems", str(info["gems"])))
        return fields

    def close(self) -> None:
        self.env.close()


# What the teacher's hazard tile is in each biome (envs/tiles.py draws it).
_HAZARD_BY_BIOME = {
    "grassland": "deep water", "forest": "deep water", "snow": "icy water",
    "desert": "quicksand", "swamp": "bog", "volcanic": "lava",
}


def _end_reason(info: dict[str, Any]) -> str:
    """A short message for a terminated (hazard) episode."""
    biome = info.get("style", {}).get("biome")
    return f"You fell into the {_HAZARD_BY_BIOME.get(biome, 'hazard')}!"


def make_source(name: str, resolution: int = 64) -> FrameSource:
    """Build the source a ``--source`` choice names."""
    if name == "teacher":
        return TeacherSource(resolution=resolution)
    raise ValueError(f"unknown source {name!r}; choose one of {', '.join(SOURCES)}")
