"""The play window: walk the world with the keyboard, in real time.

``echo-infinity play`` (what ``make play`` runs). The window shows a
:class:`demos.source.FrameSource`: the world model (``--source model``, the
default when the shipped checkpoint ``checkpoints/tiny`` exists), the teacher
game (``--source teacher``, and the fallback, with a one-line notice, while no
checkpoint ships), or both side by side (``--compare``: the teacher's true
frame beside the generated one for the same actions).

One frame of the loop (:meth:`PlayApp.tick`), held at ``--fps`` by
``pygame.time.Clock``:

    poll input -> handle keys -> source.step(action) -> draw -> flip -> wait

Input read at the top of a frame is on screen at the end of that same frame:
input-to-screen latency is one frame (the HUD's "latency" is that time). In a
tile-step world (a checkpoint with ``game.motion = "tile"``, or ``--motion
tile`` for the teacher) one move is a whole tile, so a held key moves
``--move-rate`` times a second (8 by default), with NOOP frames between
(:class:`demos.keys.Pacer`); a smooth world moves every frame a key is down. The
model source holds the frame budget itself: its session picks the denoising
steps from measured latency (``runtime.budget``); a frame that still takes
longer than 1/fps is a budget miss, counted in the HUD. Key map:
:data:`demos.keys.KEY_HELP` (F1 in the window). When an episode ends (a hazard;
for the model, its done head), the last frame stays up for 1.5 s with a
message, then the world restarts from the **same seed** with the current
prompt, so a player can retry the same place.

``--headless --frames N`` runs the same loop with SDL's dummy video driver,
unthrottled, under a scripted walk (:func:`demos.keys.headless_script`: loops
with USE, HUD and help on once, one live prompt change), prints one summary
line and exits 0: the smoke test of ``make play ARGS="--headless --frames 300"``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from demos.source import (
    ACTION_MEANINGS,
    DEFAULT_CHECKPOINT,
    MOTIONS,
    SOURCES,
    START_FRAMES,
    TEXT_ENCODERS,
    FrameSource,
)

RESOLUTIONS = (64, 128, 256)
WINDOW = 512  # default window side; --scale overrides
DEFAULT_FPS = 20.0  # the world's frame rate (the teacher's render_fps) when the loop is unthrottled
END_PAUSE_S = 1.5  # how long the end-of-episode message holds before the reset
REWIND_S = 3.0  # how far Backspace goes back (sources that can snapshot)
TOAST_S = 2.5  # how long a notice stays up
BACKENDS = ("torch", "compile", "onnxruntime", "tensorrt")  # engines.backend.BACKENDS (not imported: heavy)
MEMORY_POLICIES = ("window", "sink", "compress", "evolving", "full")  # world.config.MEMORY_POLICIES


@dataclass
class PlayConfig:
    """Everything a play session is started with (one field per CLI option)."""

    seed: int = 0
    """World seed; the world restarts from it after a hazard."""
    prompt: str | None = None
    """Initial style prompt (None: the source's default style)."""
    fps: float | None = None
    """Target frames per second (the frame budget); 0 = unthrottled; None = the highest of
    30/20/15/10 this machine holds for the model (runtime/calibrate.py), 20 for the teacher."""
    scale: int | None = None
    """Integer window scale factor; None picks 512 / resolution."""
    smooth: bool = False
    """Smooth (bilinear) scaling instead of nearest-neighbour."""
    resolution: int = 64
    """Side of the source frames in pixels (the teacher: 64, 128 or 256; the model: its checkpoint's)."""
    source: str = "teacher"
    """What generates the frames: model, teacher, or compare (both side by side)."""
    motion: str = "smooth"
    """The teacher source's motion: smooth (2 px a frame) or tile (a tile a move); a model has its checkpoint's."""
    move_rate: float = 8.0
    """Tile-step worlds: moves a second while a movement key is held (NOOP frames between)."""
    checkpoint: Path = DEFAULT_CHECKPOINT
    """The world model's directory (model.safetensors + config.json)."""
    backend: str = "auto"
    """Model backend (engines.registry); "auto": the fastest that runs here and matches eager torch
    (calibrated once per machine and checkpoint); one that cannot run here falls back with a warning."""
    policy: str | None = None
    """Memory policy to run the checkpoint with (None: the one it was trained with)."""
    start: str = "teacher"
    """Model worlds start from the teacher's first frame for the seed, or a generated one."""
    text_encoder: str = "auto"
    """Prompt encoder: auto (what the checkpoint was trained with), minilm, hash (tests)."""
    device: str = "cpu"
    """torch device of the model."""
    threads: int | None = None
    """torch CPU threads for the model; None: the count that measured fastest (1 or 2)."""
    headless: bool = False
    """No screen: SDL dummy driver, scripted input, unthrottled."""
    frames: int | None = None
    """Stop after this many frames (None: until Esc / window close)."""
    hud: bool = False
    """Start with the HUD shown (F2 toggles it)."""
    screenshot_dir: Path = Path("screenshots")
    """Where F12 writes PNGs."""
    record_dir: Path = Path("recordings")
    """Where R writes mp4 recordings and their action logs."""
    save_dir: Path = Path("saves")
    """Where F5 saves the world (sources that can snapshot)."""

    @property
    def window_scale(self) -> int:
        return self.scale if self.scale else max(1, WINDOW // self.resolution)


@dataclass
class PlaySummary:
    """What a run did; ``line()`` is what ``--headless`` prints."""

    frames: int = 0
    seconds: float = 0.0
    gems: int = 0  # collected over the whole run, all episodes
    episodes_ended: int = 0
    prompts: list[str] = field(default_factory=list)
    fps_budget: float = 0.0  # the frame budget the run held itself to (0: none)
    misses: int = 0  # frames not on screen within 1/fps_budget of their input

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self, source: str, resolution: int) -> str:
        budget = ""
        if self.fps_budget > 0 and self.frames:
            budget = (f", budget {self.fps_budget:g} fps: {self.misses} of {self.frames} frames late "
                      f"({100 * self.misses / self.frames:.1f}%)")
        return (
            f"play: {self.frames} frames in {self.seconds:.2f} s ({self.fps:.0f} fps){budget}, gems {self.gems}, "
            f"episodes ended {self.episodes_ended}, prompt changes {len(self.prompts)}, "
            f"source {source} {resolution}x{resolution}"
        )


class NoDisplay(RuntimeError):
    """The window cannot open (no X/Wayland display, or SDL refused)."""


class PlayApp:
    """The window and its loop; one :meth:`tick` per displayed frame.

    ``input`` is anything with ``poll() -> (events, held)`` (see ``demos/keys.py``);
    tests hand in a scripted one, or post events to the real queue.
    """

    def __init__(self, source: FrameSource, config: PlayConfig, input: Any = None):
        from demos.keys import Movement, PygameInput, action_keys

        self.source = source
        self.config = config
        self.input = input if input is not None else PygameInput()
        self.motion = getattr(source, "motion", "smooth")
        self.meanings = list(getattr(source, "action_meanings", ACTION_MEANINGS))
        self.noop = self.meanings.index("NOOP")
        self.movement = Movement(self.move_pacer(), self.meanings)
        self.action_keys = action_keys(self.meanings)  # Space -> USE, Crafter's Tab / Z X F P / 1-6
        self.summary = PlaySummary()
        self.running = False
        # UI state
        self.show_help = False
        self.show_hud = config.hud
        self.typing: str | None = None  # the prompt being typed; None = box closed
        self.toast_list: list[tuple[float, str, bool]] = []  # (expires at, text, warning)
        self.end_frames = 0  # frames left showing the end-of-episode banner
        self.end_reason = ""
        # world state as last seen
        self.prompt = config.prompt
        self.frame: np.ndarray | None = None
        self.info: dict[str, Any] = {}
        self.episode_events: list[list[Any]] = []  # since the last reset: ["step", a, n] / ["prompt", text]
        self.recorder = None
        self.last_screenshot: Path | None = None
        self._pending_action: int | None = None  # a one-press action (USE, ...) seen since the last frame
        self._screenshot_pending = False
        self._t_echo_frames = 0  # frames left in which a "t" TEXTINPUT is the echo of the T press
        # timing
        self._shown_at: deque[float] = deque(maxlen=30)
        self._step_ms: deque[float] = deque(maxlen=30)
        self._work_ms: deque[float] = deque(maxlen=30)
        self._t0: float | None = None
        self._closed = False

    # -- lifetime ---------------------------------------------------------------------
    def open(self) -> None:
        """Open the window and start the world."""
        from demos._pygame import import_pygame
        from demos.overlay import Overlay

        pygame = import_pygame()
        if self.config.headless:
            os.environ["SDL_VIDEODRIVER"] = "dummy"
        elif problem := display_problem():
            raise NoDisplay(problem)
        self.frame = self.source.reset(self.config.seed, self.prompt)
        self.prompt = getattr(self.source, "prompt", self.prompt)  # the model may take the teacher's caption
        self._episode_prompt = self.prompt  # what the current episode was reset with
        self.info = dict(getattr(self.source, "info", {}))
        h, w = self.frame.shape[:2]
        scale = self.config.window_scale
        try:
            pygame.display.init()
            self.screen = self._open_display((w * scale, h * scale))
        except pygame.error as e:
            raise NoDisplay(f"SDL could not open a window ({e})") from e
        driver = pygame.display.get_driver()
        if driver in ("offscreen", "dummy") and not self.config.headless and not os.environ.get("SDL_VIDEODRIVER"):
            pygame.display.quit()  # SDL fell back to an invisible window: nobody could see or play it
            raise NoDisplay(f"no screen reachable (DISPLAY={os.environ.get('DISPLAY', '')!r}; SDL fell back to {driver!r})")
        pygame.display.set_caption(f"Echo-Infinity - {self.source.name} (seed {self.config.seed})")
        pygame.key.start_text_input()  # on all the time; TEXTINPUT is ignored while the box is closed
        self.size = self.screen.get_size()
        self.overlay = Overlay(self.size)
        self.clock = pygame.time.Clock()
        self.running = True
        self._t0 = time.perf_counter()

    def move_pacer(self) -> Any:
        """Held moves' pace: a :class:`demos.keys.Pacer` in a tile-step world, None (every frame) else.

        The pace counts world frames: ``--fps``, or the teacher's 20 when unthrottled."""
        from demos.keys import Pacer

        if self.motion != "tile":
            return None
        return Pacer(self.config.move_rate, self.config.fps or DEFAULT_FPS)

    def _open_display(self, size: tuple[int, int]) -> Any:
        """The surface the game is drawn on: a window of ``size`` (the kiosk goes fullscreen)."""
        from demos._pygame import import_pygame

        return import_pygame().display.set_mode(size)

    def close(self) -> None:
        """Finish a recording, release the source and the window; safe twice."""
        if self._closed:
            return
        self._closed = True
        if self.recorder is not None:
            self._stop_recording()
        if self._t0 is not None:
            self.summary.seconds = time.perf_counter() - self._t0
        self.summary.fps_budget = self.config.fps
        self.running = False
        self.source.close()
        from demos._pygame import import_pygame

        import_pygame().display.quit()

    def run(self) -> PlaySummary:
        """Open, tick until quit (or ``config.frames``), close; returns the summary."""
        try:
            self.open()
            while self.tick():
                if self.config.frames is not None and self.summary.frames >= self.config.frames:
                    break
        finally:
            self.close()
        return self.summary

    # -- one frame --------------------------------------------------------------------
    def tick(self) -> bool:
        """Read input, advance the world one frame, draw it; False once the player quit."""
        from demos._pygame import import_pygame

        pygame = import_pygame()
        start = time.perf_counter()
        events, held = self.input.poll()
        for event in events:
            self._handle(event)
        self._t_echo_frames = max(0, self._t_echo_frames - 1)
        if not self.running:
            return False

        stepping = time.perf_counter()
        action = self._advance(held)
        stepped = time.perf_counter()
        self._draw()
        if self._screenshot_pending:
            self._screenshot_pending = False
            self._save_screenshot()
        if self.recorder is not None:
            self._record(action)
        pygame.display.flip()
        done = time.perf_counter()
        self.summary.frames += 1
        self._step_ms.append((stepped - stepping) * 1e3)
        self._work_ms.append((done - start) * 1e3)
        if self.config.fps > 0 and done - start > 1.0 / self.config.fps:
            self.summary.misses += 1
        self._shown_at.append(done)
        throttle = self.config.fps > 0 and not self.config.headless
        self.clock.tick(self.config.fps if throttle else 0)
        return True

    def _advance(self, held: Any) -> int | None:
        """Step the source with this frame's action (None while the end banner holds)."""
        if self.end_frames > 0:
            self.end_frames -= 1
            if self.end_frames == 0:
                self._reset_world()
            return None
        action = self._choose_action(held)
        self.frame, reward, done, self.info = self.source.step(action)
        if self.info.get("late"):
            return None  # the source had no new frame yet (the kiosk's watchdog): the action was not played
        if fault := self.info.get("fault"):
            self.toast(f"the model made a bad frame: {fault}", warn=True)
        self._log_step(action)
        if reward > 0:
            self.summary.gems += int(round(reward))
        if done:
            self.summary.episodes_ended += 1
            self.end_reason = self.info.get("end_reason", "The episode ended")
            self.end_frames = max(1, round(END_PAUSE_S * (self.config.fps or DEFAULT_FPS)))
        return action

    def _choose_action(self, held: Any) -> int:
        """This frame's action from the keys (the kiosk's autopilot overrides it)."""
        move = self.movement.action(held)  # every frame: the move pace counts frames
        if self._pending_action is not None:
            action = self._pending_action
        elif self.typing is not None:
            action = self.noop  # letters go to the prompt box, not to WASD
        else:
            action = move
        self._pending_action = None
        return action

    def _log_step(self, action: int) -> None:
        """Run-length log of the episode: ``["step", action, repeat]`` entries."""
        last = self.episode_events[-1] if self.episode_events else None
        if last is not None and last[0] == "step" and last[1] == action:
            last[2] += 1
        else:
            self.episode_events.append(["step", action, 1])

    def _reset_world(self) -> None:
        self.frame = self.source.reset(self.config.seed, self.prompt)
        self.prompt = getattr(self.source, "prompt", self.prompt)
        self._episode_prompt = self.prompt
        self.info = dict(getattr(self.source, "info", {}))
        self.end_frames = 0
        self.episode_events = []
        if self.recorder is not None:
            self.recorder.event("reset", seed=self.config.seed, prompt=self.prompt)

    # -- input ------------------------------------------------------------------------
    def _handle(self, event: Any) -> None:
        from demos._pygame import import_pygame

        pygame = import_pygame()
        if event.type == pygame.QUIT:
            self.running = False
        elif event.type == pygame.TEXTINPUT:
            if self.typing is None:
                return
            if self._t_echo_frames and event.text in ("t", "T"):
                self._t_echo_frames = 0  # the text of the T press that opened the box
                return
            self._t_echo_frames = 0
            self.typing += event.text
        elif event.type == pygame.KEYUP:
            self.movement.observe(event)
        elif event.type == pygame.KEYDOWN:
            self.movement.observe(event)
            if self.typing is not None:
                self._handle_typing_key(event.key)
            else:
                self._handle_key(event.key)

    def _handle_typing_key(self, key: int) -> None:
        from demos._pygame import import_pygame

        pygame = import_pygame()
        if key in (pygame.K_RETURN, pygame.K_KP_ENTER):
            text, self.typing = self.typing.strip(), None
            if text:
                self.apply_prompt(text)
        elif key == pygame.K_ESCAPE:
            self.typing = None
            self.toast("prompt cancelled")
        elif key == pygame.K_BACKSPACE:
            self.typing = self.typing[:-1]

    def _handle_key(self, key: int) -> None:
        from demos._pygame import import_pygame

        pygame = import_pygame()
        if key == pygame.K_ESCAPE:
            if self.show_help:
                self.show_help = False  # Esc closes the help first, then quits
            else:
                self.running = False
        elif key in self.action_keys:
            self._pending_action = self.action_keys[key]  # Space: USE; Crafter's own keys
        elif key == pygame.K_t:
            self.typing = ""
            self._t_echo_frames = 2  # SDL also sends the T press as text: swallow that "t"
        elif key == pygame.K_F1:
            self.show_help = not self.show_help
        elif key == pygame.K_F2:
            self.show_hud = not self.show_hud
        elif key == pygame.K_F12:
            self._screenshot_pending = True
        elif key == pygame.K_r:
            if self.recorder is None:
                self._start_recording()
            else:
                self._stop_recording()
        elif key in (pygame.K_F5, pygame.K_F9, pygame.K_BACKSPACE):
            what = {pygame.K_F5: "save", pygame.K_F9: "load", pygame.K_BACKSPACE: "rewind"}[key]
            self._snapshot(what)

    # -- actions ----------------------------------------------------------------------
    def apply_prompt(self, text: str) -> bool:
        """Change the world's style live; a bad prompt leaves the world as it was."""
        try:
            self.source.set_prompt(text)
        except ValueError as e:
            self.toast(f"prompt not applied: {e}", warn=True)
            return False
        self.prompt = text
        self.summary.prompts.append(text)
        self.episode_events.append(["prompt", text])
        if self.recorder is not None:
            self.recorder.event("prompt", text=text)
        self.toast(f"prompt: {text}")
        return True

    def _snapshot(self, what: str) -> None:
        """F5 save / F9 load / Backspace rewind, on sources that can snapshot."""
        label = {"save": "F5 save", "load": "F9 load", "rewind": "Backspace rewind"}[what]
        if not self.source.can_snapshot:
            self.toast(f"{label}: {getattr(self.source, 'no_snapshot', 'this source cannot be saved')}", warn=True)
            return
        path = Path(self.config.save_dir) / f"quicksave-{self.source.name}.snapshot"
        try:
            if what == "save":
                self.toast(f"saved the world: {self.source.save(path)}")
                return
            if what == "load":
                self.frame = self.source.load(path)
            else:
                self.frame = self.source.rewind(REWIND_S)
        except (OSError, ValueError) as e:
            self.toast(f"{label} failed: {e}", warn=True)
            return
        self.end_frames = 0
        self.prompt = getattr(self.source, "prompt", self.prompt)  # a loaded world brings its prompt
        self.info = dict(getattr(self.source, "info", self.info))
        self.episode_events.append([what, str(path) if what == "load" else REWIND_S])
        if self.recorder is not None:
            self.recorder.event(what)
        self.toast("loaded the world" if what == "load" else f"rewound {REWIND_S:g} s")

    def toast(self, text: str, warn: bool = False) -> None:
        self.toast_list.append((time.monotonic() + TOAST_S, text, warn))
        del self.toast_list[:-3]  # at most three at once

    def _save_screenshot(self) -> None:
        from demos._pygame import import_pygame
        from runtime.recorder import stamp

        directory = Path(self.config.screenshot_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"echo-infinity-{stamp()}-f{self.summary.frames:06d}.png"
        import_pygame().image.save(self.screen, str(path))
        self.last_screenshot = path
        self.toast(f"screenshot saved: {path}")

    def _start_recording(self) -> None:
        from runtime.recorder import VideoRecorder, stamp

        path = Path(self.config.record_dir) / f"echo-infinity-{stamp()}.mp4"
        header = {
            "source": self.source.name,
            "seed": self.config.seed,
            "resolution": self.config.resolution,
            "motion": self.motion,
            **({"model": self.source.meta} if hasattr(self.source, "meta") else {}),
            "action_meanings": list(ACTION_MEANINGS),
            "start": {"prompt": self._episode_prompt, "before": [list(e) for e in self.episode_events]},
        }
        try:
            self.recorder = VideoRecorder(path, self.config.fps or 20, self.size, header)
        except RuntimeError as e:
            self.toast(str(e), warn=True)
            return
        self.toast(f"recording: {path}")

    def _stop_recording(self) -> None:
        recorder, self.recorder = self.recorder, None
        recorder.close()
        self.toast(f"saved {recorder.frames} frames: {recorder.path}")

    def _record(self, action: int | None) -> None:
        import cv2

        interp = cv2.INTER_LINEAR if self.config.smooth else cv2.INTER_NEAREST
        picture = cv2.resize(np.ascontiguousarray(self.frame), self.size, interpolation=interp)
        entry = {"action": action, "world_frame": self.info.get("frame")}
        self.recorder.write(picture, entry)

    # -- drawing ----------------------------------------------------------------------
    def _draw(self) -> None:
        from demos._pygame import import_pygame
        from demos.keys import KEY_HELP

        pygame = import_pygame()
        frame = np.ascontiguousarray(self.frame)
        h, w = frame.shape[:2]
        small = pygame.image.frombuffer(frame.tobytes(), (w, h), "RGB")
        scale = pygame.transform.smoothscale if self.config.smooth else pygame.transform.scale
        self.screen.blit(scale(small, self.size), (0, 0))

        ov = self.overlay
        if labels := getattr(self.source, "labels", None):  # compare: name each picture
            ov.labels(self.screen, labels)
        if self.show_hud and not self.show_help:  # the help panel would cover it
            ov.hud(self.screen, self.hud_fields(), self.info.get("caption", ""))
        if self.end_frames > 0:
            ov.banner(self.screen, self.end_reason, "the world restarts from the same seed")
        if self.show_help:
            pace = (f" ({self.config.move_rate:g} tile steps a second)" if self.movement.pacer is not None
                    else " (every frame)")
            footer = (
                f"source: {self.source.name}, seed {self.config.seed}. "
                f"Movement repeats while held{pace}; the key pressed last wins. Esc closes this help."
            )
            ov.help(self.screen, KEY_HELP, "Echo-Infinity - keys", footer)
        bottom = self.size[1]
        if self.typing is not None:
            bottom = ov.prompt_box(self.screen, self.typing, cursor=(self.summary.frames // 8) % 2 == 0)
        now = time.monotonic()
        self.toast_list = [t for t in self.toast_list if t[0] > now]
        if self.recorder is not None and not self.show_hud:  # the HUD says "recording" itself
            pygame.draw.circle(self.screen, (230, 40, 40), (self.size[0] - 14, 14), 7)  # REC dot
        ov.toasts(self.screen, [(text, warn) for _, text, warn in self.toast_list], bottom)

    def hud_fields(self) -> list[tuple[str, str]]:
        """The HUD's label/value lines: timing first, then what the source reports."""
        shown = self._shown_at
        fps = (len(shown) - 1) / (shown[-1] - shown[0]) if len(shown) > 1 and shown[-1] > shown[0] else 0.0
        step_ms = sum(self._step_ms) / len(self._step_ms) if self._step_ms else 0.0
        work_ms = sum(self._work_ms) / len(self._work_ms) if self._work_ms else 0.0
        target = f" / {self.config.fps:g}" if self.config.fps and not self.config.headless else ""
        frames = max(1, self.summary.frames)
        fields = [
            ("fps", f"{fps:.1f}{target}"),
            ("latency", f"{work_ms:.1f} ms input to screen (step {step_ms:.1f})"),
            ("frame", str(self.info.get("frame", 0))),
            *self.source.hud_fields(self.info),
        ]
        if self.config.fps > 0:
            fields.append(("budget misses", f"{self.summary.misses} ({100 * self.summary.misses / frames:.1f}%)"))
        fields.append(("source", f"{self.source.name} {self.config.resolution}px, seed {self.config.seed}"))
        if self.movement.pacer is not None:
            fields.append(("moves", f"tile steps, {self.config.move_rate:g}/s held"))
        if self.prompt and self.prompt != self.info.get("caption"):  # the caption line shows it otherwise
            fields.append(("prompt", _clip(self.prompt, 34)))
        if self.recorder is not None:
            fields.append(("recording", f"{self.recorder.frames} frames"))
        return fields


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def display_problem() -> str | None:
    """Why no window can open here, when that is knowable before trying (Linux without a display)."""
    if os.environ.get("SDL_VIDEODRIVER"):
        return None  # the user chose a driver (dummy, x11, wayland, ...): let SDL try it
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    return None


# -- command line ---------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``echo-infinity play`` options."""
    parser.add_argument("--source", choices=SOURCES, default=None,
                        help="what draws the world: the world model, or the teacher game it learnt from "
                        "(default: model when a checkpoint exists, else teacher)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help=f"world model directory (model.safetensors + config.json; default {_shown(DEFAULT_CHECKPOINT)})")
    parser.add_argument("--compare", action="store_true",
                        help="the teacher's true frame beside the generated one, for the same actions "
                        "(the model starts from the teacher's first frame and caption, same seed)")
    parser.add_argument("--start", choices=START_FRAMES, default="teacher",
                        help="model: first frame from the teacher game for the seed (default), or generated from the prompt")
    parser.add_argument("--backend", choices=("auto",) + BACKENDS, default="auto",
                        help="model: step backend; auto (default) takes the fastest that runs here and matches "
                        "eager torch, measured once per machine and checkpoint; a named one that cannot run "
                        "here falls back with a warning. Headless runs default to torch")
    parser.add_argument("--policy", choices=MEMORY_POLICIES, default=None,
                        help="model: memory policy (default: the checkpoint's own, evolving for the shipped one)")
    parser.add_argument("--device", default="cpu", help="model: torch device, cpu or cuda[:i] (default cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="model: torch CPU threads (default: the count that measured fastest; headless 1)")
    parser.add_argument("--text-encoder", choices=TEXT_ENCODERS, default="auto", help=argparse.SUPPRESS)  # tests: hash
    parser.add_argument("--seed", type=int, default=0, help="world seed; the world restarts from it after a hazard (default 0)")
    parser.add_argument("--prompt", default=None,
                        help="initial style prompt, e.g. 'snowy forest at night in the fog' "
                        "(default: the teacher's caption for the seed)")
    parser.add_argument("--fps", type=_fps_arg, default=None, metavar="FPS|auto",
                        help="target frames per second: the frame budget; 0 = unthrottled; auto (default): the "
                        "highest of 30/20/15/10 this machine holds for the model (20 for the teacher and headless)")
    parser.add_argument("--move-rate", type=float, default=8.0,
                        help="tile-step worlds (a checkpoint with game.motion 'tile', or --motion tile): moves a "
                        "second while an arrow / WASD key is held, with NOOP frames between so the world keeps "
                        "animating; a fresh press moves at once. Smooth worlds move every frame (default 8)")
    parser.add_argument("--motion", choices=MOTIONS, default=None,
                        help="teacher: 'smooth' (2 px a frame) or 'tile' (one tile a move, what the tiny preset trains "
                        "on); the model and --compare use the checkpoint's game.motion (default: smooth / the "
                        "checkpoint's)")
    parser.add_argument("--resolution", type=int, choices=RESOLUTIONS, default=None,
                        help="teacher: frame side in pixels (default 64; the model draws its checkpoint's size)")
    parser.add_argument("--scale", type=int, default=None,
                        help=f"integer window scale factor (default: {WINDOW} / resolution, a {WINDOW}x{WINDOW} window)")
    parser.add_argument("--smooth", action="store_true", help="smooth (bilinear) scaling instead of sharp nearest-neighbour pixels")
    parser.add_argument("--hud", action="store_true", help="start with the HUD shown (F2 toggles it)")
    parser.add_argument("--screenshot-dir", type=Path, default=Path("screenshots"), help="where F12 saves PNGs (default ./screenshots)")
    parser.add_argument("--record-dir", type=Path, default=Path("recordings"),
                        help="where R saves mp4 recordings and their .actions.json logs (default ./recordings)")
    parser.add_argument("--save-dir", type=Path, default=Path("saves"),
                        help="where F5 saves the world (sources that can snapshot; default ./saves)")
    parser.add_argument("--headless", action="store_true",
                        help="no screen: SDL dummy driver, a scripted walk (USE, one prompt change), unthrottled; prints a summary")
    parser.add_argument("--frames", type=int, default=None,
                        help="stop after N frames (default: until Esc; with --headless: 300)")


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is under it (help texts, messages)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def pick_source(source: str | None, compare: bool, checkpoint: Path | None) -> tuple[str, Path, str | None]:
    """``(source, checkpoint, notice)`` for the options given; ValueError when they cannot run.

    No ``--source``: the model when its checkpoint exists, else the teacher with a notice
    (until the trained checkpoint ships). The model without a checkpoint is an error.
    """
    from demos.source import checkpoint_problem

    path = Path(checkpoint if checkpoint is not None else DEFAULT_CHECKPOINT)
    if compare:
        if source == "teacher":
            raise ValueError("--compare shows the model beside the teacher; drop --source teacher")
        source = "compare"
    notice = None
    if source is None:
        if checkpoint is None and checkpoint_problem(path):
            source = "teacher"
            notice = (f"echo-infinity play: no trained checkpoint at {_shown(path)} yet: playing the teacher game "
                      "(--checkpoint DIR plays a world model)")
        else:
            source = "model"
    if source in ("model", "compare") and (problem := checkpoint_problem(_shown(path))):
        hint = "train one with `make train`, pass --checkpoint DIR, or play the teacher game with --source teacher"
        raise ValueError(f"--source {source if source != 'compare' else 'model (--compare)'}: {problem}; {hint}")
    return source, path, notice


def _fps_arg(text: str) -> float | None:
    """--fps: a number, or auto (None)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of frames a second or auto, got {text!r}") from None


def config_from_args(args: argparse.Namespace) -> tuple[PlayConfig, str | None]:
    """The play config and a notice to print (the teacher fallback); ValueError on bad options."""
    frames = args.frames if args.frames is not None else (300 if args.headless else None)
    if frames is not None and frames < 1:
        raise ValueError(f"--frames must be at least 1, got {frames}")
    if args.scale is not None and args.scale < 1:
        raise ValueError(f"--scale must be a positive integer, got {args.scale}")
    if args.fps is not None and args.fps < 0:
        raise ValueError(f"--fps must be >= 0 (0 = unthrottled) or auto, got {args.fps:g}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if not args.move_rate > 0:
        raise ValueError(f"--move-rate must be > 0 moves a second, got {args.move_rate:g}")
    source, checkpoint, notice = pick_source(args.source, args.compare, args.checkpoint)
    if args.compare and args.start != "teacher":
        raise ValueError("--compare starts the model from the teacher's first frame; drop --start generated")
    motion = args.motion or "smooth"
    if source != "teacher":
        from demos.source import checkpoint_game

        motion = checkpoint_game(checkpoint).motion
        if args.motion is not None and args.motion != motion:
            raise ValueError(f"--motion {args.motion}: the checkpoint {_shown(checkpoint)} moves {motion!r} "
                             "(its game.motion); --motion is for the teacher source")
    fps, backend, threads = args.fps, args.backend, args.threads
    if args.headless or source == "teacher":  # reproducible runs: the defaults, no calibration
        fps = DEFAULT_FPS if fps is None else fps
        backend = "torch" if backend == "auto" else backend
        threads = 1 if threads is None else threads
    config = PlayConfig(
        seed=args.seed, prompt=args.prompt, fps=fps, scale=args.scale, smooth=args.smooth,
        resolution=args.resolution or 64, source=source, motion=motion, move_rate=args.move_rate,
        headless=args.headless, frames=frames,
        hud=args.hud, screenshot_dir=args.screenshot_dir, record_dir=args.record_dir, save_dir=args.save_dir,
        checkpoint=checkpoint, backend=backend, policy=args.policy, start=args.start,
        text_encoder=args.text_encoder, device=args.device, threads=threads,
    )
    return config, notice


def build_source(config: PlayConfig, resolution_given: bool = False) -> FrameSource:
    """The source ``config`` names; for the model, ``config.resolution`` becomes the checkpoint's."""
    from demos.source import make_source

    if config.source == "teacher":
        return make_source("teacher", resolution=config.resolution, motion=config.motion)
    source = make_source(config.source, checkpoint=config.checkpoint, fps=config.fps, backend=config.backend,
                         threads=config.threads, policy=config.policy, start=config.start,
                         text_encoder=config.text_encoder, device=config.device)
    model = getattr(source, "model", source)  # CompareSource wraps the ModelSource
    config.fps, config.backend, config.threads = model.fps, model.backend, model.threads  # as calibrated
    if resolution_given and source.resolution != config.resolution:
        source.close()
        raise ValueError(f"--resolution {config.resolution}: the checkpoint draws {source.resolution}x{source.resolution} "
                         "frames (--resolution is for the teacher)")
    config.resolution = source.resolution
    return source


def main(args: argparse.Namespace) -> int:
    """Run the play window; returns the exit code (2 on bad options or no display)."""
    from demos.keys import ScriptedInput, headless_script

    try:
        config, notice = config_from_args(args)
    except ValueError as e:
        print(f"echo-infinity play: {e}", file=sys.stderr)
        return 2
    if notice:
        print(notice, file=sys.stderr)
    if not config.headless and (problem := display_problem()):
        return _no_display(problem)
    try:
        source = build_source(config, resolution_given=args.resolution is not None)
    except (ValueError, FileNotFoundError) as e:
        print(f"echo-infinity play: {e}", file=sys.stderr)
        return 2
    if config.prompt:
        try:  # a bad --prompt is a usage error, not a traceback
            source.reset(config.seed, config.prompt)
        except ValueError as e:
            source.close()
            print(f"echo-infinity play: --prompt: {e}", file=sys.stderr)
            return 2
    scripted = ScriptedInput(headless_script(config.frames)) if config.headless else None
    app = PlayApp(source, config, input=scripted)
    try:
        summary = app.run()
    except NoDisplay as e:
        return _no_display(str(e))
    except KeyboardInterrupt:
        summary = app.summary
    print(summary.line(config.source, config.resolution))
    return 0


def _no_display(problem: str) -> int:
    print(
        f"echo-infinity play: cannot open a window: {problem}.\n"
        "  without a screen:        echo-infinity play --headless --frames 300\n"
        "  in a virtual display:    xvfb-run -a echo-infinity play",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":  # python -m demos.play
    _parser = argparse.ArgumentParser(prog="python -m demos.play", description=__doc__.split("\n\n")[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
