"""Frame sources: what the play window shows, behind one small protocol.

The window (``demos/play.py``) only talks to a :class:`FrameSource`; it never
imports the game or the model. Three sources (the layering of DIAMOND's
``envs/world_model_env.py`` -> ``game/game.py``):

- :class:`TeacherSource`: the procedural teacher game of ``envs/teacher.py``
  (ground truth, no network); :class:`CrafterSource` is Crafter (``envs/crafter.py``),
  the real game behind a Crafter checkpoint (``game.env = "crafter"``);
- :class:`ModelSource`: the world model, a ``runtime.Session`` held to a frame
  budget (``BudgetConfig(fps)`` picks the denoising steps from measured
  latency); it also saves, loads and rewinds (:class:`SnapshotSource`, the
  F5/F9/Backspace keys);
- :class:`CompareSource`: the teacher's true frame beside the model's, for the
  same actions, the model started from the teacher's first frame and caption.

Every source names its actions (``action_meanings``: the teacher's six, or Crafter's 17);
the window maps keys to actions by those names.

Every source has a ``motion``: how far one move goes (``envs.teacher``:
``"smooth"``, 2 px a frame, or ``"tile"``, one whole tile a move). A model source
takes its checkpoint's (``game.motion``), and any teacher it runs beside or
starts from moves the same way; the window paces held keys by it.

The model source steps the session synchronously, in the window's loop: the
frame is read, generated and shown in the same loop iteration (one frame of
input latency), and the budget keeps the step inside the frame period. The
kiosk, which must survive a stalled step, runs any source on a worker thread
(``demos/watchdog.py``) instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

# The shared Discrete(6) action set of the teacher and the world model.
from envs.teacher import ACTION_MEANINGS, DOWN, LEFT, MOTIONS, NOOP, RIGHT, UP, USE  # noqa: F401  (re-exported)

SOURCES = ("model", "teacher")
# The shipped checkpoint, at the repository root (what `play` and the kiosk run by default).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "tiny"
TEXT_ENCODERS = ("auto", "minilm", "hash")  # auto: the one the checkpoint was trained with
DONE_THRESHOLD = 0.9  # the done head must be this sure before the model ends an episode
START_FRAMES = ("teacher", "generated")  # where a model world's first frame comes from


@runtime_checkable
class FrameSource(Protocol):
    """A steppable world that returns RGB frames.

    Frames are ``uint8 [R, R, 3]`` at the source's ``resolution`` (the compare
    source's are ``[R, 2R, 3]``, two pictures side by side); ``info`` is a free
    dict: the window reads ``frame`` (index), ``caption``, ``end_reason`` and the
    HUD the rest through :meth:`hud_fields`.
    """

    name: str
    resolution: int
    motion: str  # "smooth" or "tile" (envs.teacher): how far one move goes; the window paces keys by it
    action_meanings: list[str]  # the action names, by index (world.actions)
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
    window binds them to F5, F9 and Backspace. ``prompt`` is the prompt in effect
    (a loaded world brings its own).
    """

    prompt: str | None

    def save(self, path: Path) -> Path:
        """Write the world state to ``path``; returns the file written."""

    def load(self, path: Path) -> np.ndarray:
        """Restore a state written by :meth:`save`; returns the frame to show."""

    def rewind(self, seconds: float) -> np.ndarray:
        """Go back about ``seconds`` of play; returns the frame to show."""


class TeacherSource:
    """The teacher game (``envs.teacher.TeacherEnv``) as a frame source."""

    name = "teacher"
    can_snapshot = False
    no_snapshot = "the teacher game cannot be saved or rewound (the world model can: --source model)"
    action_meanings = list(ACTION_MEANINGS)

    def __init__(self, resolution: int = 64, motion: str = "smooth"):
        from envs.teacher import TeacherEnv

        self.resolution = resolution
        self.motion = motion  # "smooth" (2 px a frame) or "tile" (one tile a move)
        self.env = TeacherEnv(render_mode="rgb_array", resolution=resolution, motion=motion)
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


class CrafterSource:
    """Crafter (``envs.crafter.CrafterEnv``: 64 px, one tile a move) as a frame source."""

    name = "crafter"
    can_snapshot = False
    no_snapshot = "the Crafter game cannot be saved or rewound (its world model can: --source model)"
    resolution, motion = 64, "tile"

    def __init__(self):
        from envs.crafter import CrafterEnv

        self.env = CrafterEnv()
        self.action_meanings = self.env.get_action_meanings()
        self.info: dict[str, Any] = {}

    def reset(self, seed: int, prompt: str | None = None) -> np.ndarray:
        obs, self.info = self.env.reset(seed=seed)  # Crafter has no prompt: the caption is fixed
        return obs

    def step(self, action: int) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info["end_reason"] = "You died" if terminated else "Time is up"
        self.info = info
        return obs, float(reward), bool(terminated or truncated), info

    def set_prompt(self, text: str) -> None:
        raise ValueError("Crafter has no prompt: its look is fixed")

    def hud_fields(self, info: dict[str, Any]) -> list[tuple[str, str]]:
        inv, done = info.get("inventory", {}), info.get("achievements", {})
        fields = [("vitals", " ".join(f"{k} {inv[k]}" for k in ("health", "food", "drink", "energy") if k in inv))]
        return fields + [("achievements", f"{sum(1 for v in done.values() if v)} of {len(done)}")] if done else fields

    def close(self) -> None:
        self.env.close()


def game_source(game, resolution: int) -> "TeacherSource | CrafterSource":
    """The real game behind a checkpoint (its ``game`` config: the teacher in its motion mode, or Crafter)."""
    if game.env == "crafter":
        return CrafterSource()
    return TeacherSource(resolution, game.motion)


# What the teacher's hazard tile is in each biome (envs/tiles.py draws it).
_HAZARD_BY_BIOME = {
    "grassland": "deep water", "forest": "deep water", "snow": "icy water",
    "desert": "quicksand", "swamp": "bog", "volcanic": "lava",
}


def _end_reason(info: dict[str, Any]) -> str:
    """A short message for a terminated (hazard) episode."""
    biome = info.get("style", {}).get("biome")
    return f"You fell into the {_HAZARD_BY_BIOME.get(biome, 'hazard')}!"


# -- the world model ----------------------------------------------------------------------
def checkpoint_problem(directory: str | Path) -> str | None:
    """Why ``directory`` is not a loadable checkpoint (None when it is one)."""
    from world.model import CONFIG_FILE, WEIGHTS_FILE

    d = Path(directory)
    if not d.is_dir():
        return f"no checkpoint at {d}"
    missing = [f for f in (WEIGHTS_FILE, CONFIG_FILE) if not (d / f).is_file()]
    return f"{d} is not a checkpoint (missing {', '.join(missing)})" if missing else None


def checkpoint_game(directory: str | Path):
    """The checkpoint's ``game`` config (``env``, ``motion``) from its config.json (no weights read);
    old configs: the teacher, "smooth"."""
    from world.checkpoint import read_config

    return read_config(directory).game


def trained_text_encoder(directory: str | Path) -> str:
    """The text encoder a checkpoint was trained with (``trainer.json`` beside it), else minilm."""
    meta = Path(directory) / "trainer.json"
    try:
        kind = json.loads(meta.read_text())["train_config"]["text_encoder"]
    except (OSError, KeyError, TypeError, ValueError):  # ValueError: not JSON, or not UTF-8
        return "minilm"
    return kind if kind in ("minilm", "hash") else "minilm"


def calibrate_for(checkpoint: str | Path, backend: str = "auto", threads: int | None = None, fps: float | None = None,
                  device: str = "cpu", policy: str | None = None, say=print):
    """`runtime.calibrate.choose` for a checkpoint directory: what the flags left open ("auto",
    None), measured on this machine (cached per machine and checkpoint), said in one line."""
    from runtime.calibrate import choose
    from runtime.session import checkpoint_hash
    from world.model import WorldModel

    model = WorldModel.load(checkpoint, device=device, policy=policy)
    choice = choose(model, checkpoint_hash(model, Path(checkpoint)), backend, threads, fps or None,
                    device=device, say=say)
    say(choice.line())
    return choice


class ModelSource:
    """The world model: a one-world ``runtime.Session`` held to ``fps`` by its frame budget.

    ``start="teacher"`` starts every world from the teacher game's first frame
    for the seed (and, without a prompt, the teacher's caption as the prompt);
    ``start="generated"`` lets the model draw the first frame from the prompt
    alone. The session is stepped in the caller's thread (see the module
    docstring); ``steps`` fixes the denoising steps instead of the budget's choice.
    """

    name = "model"
    can_snapshot = True

    def __init__(self, checkpoint: str | Path, *, fps: float | None = 20.0, backend: str = "torch",
                 threads: int | None = 1, policy: str | None = None, start: str = "teacher",
                 text_encoder: str = "auto", device: str = "cpu", steps: int | None = None,
                 done_threshold: float | None = DONE_THRESHOLD, say=print):
        """backend "auto", threads None or fps None: chosen by a calibration on this machine
        (runtime/calibrate.py, cached per machine and checkpoint; `self.choice` says what).
        fps 0: no budget (unthrottled)."""
        import torch

        from runtime.budget import BudgetConfig
        from runtime.session import Session

        if start not in START_FRAMES:
            raise ValueError(f"start must be one of {', '.join(START_FRAMES)}, got {start!r}")
        if text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text encoder must be one of {', '.join(TEXT_ENCODERS)}, got {text_encoder!r}")
        if problem := checkpoint_problem(checkpoint):
            raise FileNotFoundError(problem)
        if text_encoder == "auto":
            text_encoder = trained_text_encoder(checkpoint)
        self.choice = None
        if backend == "auto" or threads is None or fps is None:
            self.choice = calibrate_for(checkpoint, backend, threads, fps, device, policy, say)
            backend, threads = self.choice.backend, self.choice.threads
            fps = self.choice.fps if fps is None else fps  # 0 stays unthrottled
        torch.set_num_threads(threads)
        budget = BudgetConfig(fps=fps) if fps and fps > 0 and steps is None else None
        self.fps, self.threads = fps, threads
        self.session = Session(checkpoint, backend=backend, device=device, budget=budget, steps=steps,
                               policy=policy, text_encoder=text_encoder)
        self.resolution = self.session.cfg.tokenizer.image_size
        self.game = self.session.cfg.game  # the real game it starts from: the teacher or Crafter
        self.motion = self.game.motion  # the teacher it starts from moves the same way
        self.action_meanings = list(self.session.action_meanings)
        self.start = start
        self.done_threshold = done_threshold
        self.backend = backend
        self.meta = {"checkpoint": str(checkpoint), "checkpoint_hash": self.session.checkpoint_hash,
                     "policy": self.session.cfg.memory.policy, "backend": backend, "start": start,
                     "text_encoder": text_encoder, "motion": self.motion, "game": self.game.env}
        self.prompt: str | None = None
        self.info: dict[str, Any] = {}
        self._teacher: TeacherSource | CrafterSource | None = None

    # -- FrameSource ------------------------------------------------------------------
    def reset(self, seed: int, prompt: str | None = None) -> np.ndarray:
        if self.game.env != "teacher":
            prompt = None  # Crafter has no prompt: the model follows the caption it was trained with
        if self.start == "generated" and prompt:
            start_frame, caption = None, prompt  # no teacher needed at all
        else:
            start_frame, caption = self._teacher_start(seed, prompt)
        self.prompt = prompt or caption
        frame = self.session.reset(seed=seed, prompt=self.prompt,
                                   start_frame=start_frame if self.start == "teacher" else None)
        self.info = {"frame": self.frame_index, "caption": self.prompt}
        return frame

    def _teacher_start(self, seed: int, prompt: str | None) -> tuple[np.ndarray, str]:
        """The teacher's first frame and caption for ``seed`` (in the prompt's style when
        the teacher understands it; the model takes any text)."""
        if self._teacher is None:
            self._teacher = game_source(self.game, self.resolution)
        try:
            frame = self._teacher.reset(seed, prompt)
        except ValueError:
            frame = self._teacher.reset(seed, None)
        return frame, self._teacher.info["caption"]

    @property
    def frame_index(self) -> int:
        """Index of the frame on screen, 0 for a world's first (the session counts frames made)."""
        return max(0, self.session.frame_index - 1)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        """One frame. A non-finite frame (the session's ``FrameError``; the session has gone
        back to its newest rewind snapshot) is reported as ``info["fault"]``, not raised:
        the window says so and plays on, the kiosk's watchdog restarts the world."""
        from runtime.session import FrameError

        try:
            out = self.session.advance(int(action))
        except FrameError as e:
            self.info = {"frame": self.frame_index, "caption": self.prompt, "fault": str(e)}
            return self.session.frames[0], 0.0, False, self.info
        reward, done_prob = float(out.reward[0]), float(out.done[0])
        done = self.done_threshold is not None and done_prob >= self.done_threshold
        self.info = {"frame": self.frame_index, "caption": self.prompt, "steps": out.steps,
                     "model_ms": out.latency_ms, "reward": reward, "done_prob": done_prob,
                     "stats": self.session.stats()}  # read here: the kiosk steps on another thread
        if done:
            self.info["end_reason"] = f"The world model ended the episode (p = {done_prob:.2f})"
        return out.frames[0], reward, done, self.info

    def set_prompt(self, text: str) -> None:
        if self.game.env != "teacher":
            raise ValueError(f"this checkpoint learned {self.game.env}, which has no prompt")
        if not text.strip():
            raise ValueError("the prompt is empty")
        self.session.set_prompt(text)
        self.prompt = text

    def hud_fields(self, info: dict[str, Any]) -> list[tuple[str, str]]:
        """From ``info`` only (the session's figures as of that step), never the live session."""
        fields = []
        budget = self.session.budget
        if "steps" in info:
            span = f" (budget {budget.config.min_steps}-{budget.config.max_steps})" if budget else " (fixed)"
            fields.append(("steps", f"{info['steps']} denoising{span}"))
        stats = info.get("stats")
        if stats:
            lat = stats["latency_ms"]
            fields.append(("model", f"{lat['p50']:.1f} ms p50, {lat['p99']:.1f} p99"))
        fields.append(("memory", f"{self.meta['policy']} ({self.backend})"))
        if self.choice is not None and self.choice.calibration is not None:
            c = self.choice.calibration
            fields.append(("calibrated", f"{c.backend} x{c.threads}, {c.frame_ms_p50:.0f} ms -> {self.fps:g} fps"))
        if stats and "over_budget" in stats:
            fields.append(("over budget", f"{stats['over_budget']} model frames"))
        if stats and stats["faults"]:
            fields.append(("faults", str(stats["faults"])))
        return fields

    def close(self) -> None:
        if self._teacher is not None:
            self._teacher.close()
            self._teacher = None

    # -- SnapshotSource ---------------------------------------------------------------
    def save(self, path: Path) -> Path:
        return self.session.save(path)

    def load(self, path: Path) -> np.ndarray:
        frame = self.session.load(path)
        self.prompt = self.session.prompts[0] or self.prompt
        self.info = {"frame": self.frame_index, "caption": self.prompt}
        return frame

    def rewind(self, seconds: float) -> np.ndarray:
        try:
            frame = self.session.rewind(seconds)
        except IndexError as e:  # nothing kept yet
            raise ValueError(str(e)) from e
        self.info = {"frame": self.frame_index, "caption": self.prompt}
        return frame


class CompareSource:
    """The teacher's true frame (left) beside the model's (right), for the same actions.

    Both worlds start from the same seed; the model from the teacher's first
    frame, with the teacher's caption as its prompt (a prompt change goes to the
    teacher, and its new caption to the model). The teacher moves in the
    checkpoint's mode (``game.motion``), so the two pictures see the same moves.
    A hazard in the teacher ends the episode for both. No snapshots: the
    teacher has none to keep in step.
    """

    name = "compare"
    can_snapshot = False
    no_snapshot = "compare mode keeps the teacher and the model in lockstep: no save, load or rewind"
    labels = ("teacher (truth)", "world model")

    def __init__(self, model: ModelSource):
        if model.start != "teacher":
            raise ValueError("--compare starts the model from the teacher's first frame (--start teacher)")
        self.model = model
        self.resolution, self.motion = model.resolution, model.motion
        self.action_meanings = model.action_meanings
        self.teacher = game_source(model.game, model.resolution)
        if model.game.env != "teacher":
            self.labels = (f"{model.game.env} (truth)", "world model")
        self.meta = {**model.meta, "compare": True}
        self.info: dict[str, Any] = {}

    def reset(self, seed: int, prompt: str | None = None) -> np.ndarray:
        truth = self.teacher.reset(seed, prompt)  # a prompt the teacher cannot read fails here
        caption = self.teacher.info["caption"]
        self.model.prompt = caption
        generated = self.model.session.reset(seed=seed, prompt=caption, start_frame=truth)
        self.info = {**self.teacher.info, "caption": caption}
        return _side_by_side(truth, generated)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        truth, reward, done, info = self.teacher.step(action)
        if info.get("caption") != self.model.prompt:  # a style change reached the teacher
            self.model.set_prompt(info["caption"])
        generated, _, _, model_info = self.model.step(action)
        self.info = {**model_info, **info, "psnr": psnr(truth, generated)}
        return _side_by_side(truth, generated), reward, done, self.info

    def set_prompt(self, text: str) -> None:
        self.teacher.set_prompt(text)  # raises ValueError on words the teacher does not know (or Crafter)
        self.model.set_prompt(self.teacher.env.caption)

    def hud_fields(self, info: dict[str, Any]) -> list[tuple[str, str]]:
        fields = [("PSNR", f"{info['psnr']:.1f} dB model vs truth")] if "psnr" in info else []
        return fields + self.teacher.hud_fields(info) + self.model.hud_fields(info)

    def close(self) -> None:
        self.teacher.close()
        self.model.close()


def _side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.concatenate([left, right], axis=1)  # [R, 2R, 3]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB (99 for identical ones)."""
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 99.0 if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


def make_source(name: str, resolution: int = 64, motion: str = "smooth", **model_options: Any) -> FrameSource:
    """Build the source a ``--source`` choice names (``compare``: the model beside the teacher).

    ``resolution`` and ``motion`` are the teacher's (a model source takes its checkpoint's);
    ``model_options`` go to :class:`ModelSource` (``checkpoint``, ``fps``, ``backend``, ...).
    """
    if name == "teacher":
        return TeacherSource(resolution=resolution, motion=motion)
    if name == "model":
        return ModelSource(**model_options)
    if name == "compare":
        return CompareSource(ModelSource(**model_options))
    raise ValueError(f"unknown source {name!r}; choose one of {', '.join(SOURCES)}")
