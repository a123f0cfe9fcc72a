"""Kiosk mode: the world on a public screen, unattended, for days.

``echo-infinity kiosk --config kiosk.toml`` (sample and field docs:
``demos/kiosk.toml``; validation: ``demos/kiosk_config.py``). It is the play
window (:class:`demos.play.PlayApp`) with the rules of a public place:

- **fullscreen**, the picture centred at the largest size that fits; the
  keyboard and mouse grabbed. Visitors play with the game keys (move, use, T
  prompt, F1 help, F2 HUD, F5/F9/Backspace) but cannot leave: Esc and closing
  the window are ignored, and R (recording) / F12 (screenshots) write no files;
- **attract mode**: no key for ``attract.idle_seconds`` and an autopilot walks
  the world (``envs.policies.ExplorePolicy``, a sticky random walk with
  momentum; it needs only the action names, not the teacher), while the
  prompt cycles through ``attract.playlist``. In a tile-step world (a
  checkpoint with ``game.motion = "tile"``) it walks at ``world.move_rate``
  moves a second, NOOP frames between, as a visitor's held key does. Any key
  hands control back;
- **fresh worlds**: after ``session.idle_reset_seconds`` without a key (and
  again every as long while nobody plays), and when a visitor's world is
  ``session.max_seconds`` old (counted from their first key), a new world
  starts (the next seed, the start prompt);
- **watchdog** (``demos/watchdog.py``): generation runs on a worker thread;
  an exception or a frame stalled for ``watchdog.stall_seconds`` restarts the
  world cleanly (a fresh model after a stall) and is logged; the window keeps
  drawing throughout;
- **operator hotkeys** (``demos/hotkeys.py``): ctrl+alt+R fresh world, ctrl+alt+P
  next prompt, ctrl+alt+Q quit, global through pynput (they work when the
  window is not focused); where pynput cannot start, the kiosk says so once and
  takes the same keys inside the window;
- a **rotating log** (``logging.handlers.RotatingFileHandler``): start, attract
  on/off, fresh worlds and why, restarts with tracebacks, operator commands,
  periodic fps / budget-miss figures.

Timers read ``clock`` (``time.monotonic`` unless a test injects its own), so
attract mode, idle resets and the session cap are tested without sleeping.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import logging.handlers
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from demos.kiosk_config import ConfigError, KioskConfig, WorldSection, load_config
from demos.play import NoDisplay, PlayApp, PlayConfig, display_problem
from demos.source import ACTION_MEANINGS, DEFAULT_CHECKPOINT

LOG = logging.getLogger("echo_infinity.kiosk")
COUNTDOWN_S = 30.0  # the last seconds of a visitor's world show a countdown
CARD_TITLE = "Press any key to play"


class _ActionsOnly:
    """All ``envs.policies`` needs of an env: its actions (no game behind it, so no hazard steering)."""

    def __init__(self, meanings=ACTION_MEANINGS) -> None:
        from gymnasium import spaces

        self.meanings = list(meanings)
        self.action_space = spaces.Discrete(len(self.meanings))
        self.unwrapped = self

    def get_action_meanings(self) -> list[str]:
        return list(self.meanings)


TILE_HOLD = 4  # smooth moves (2 px) in one tile step (8 px): a tile autopilot holds a direction 4x fewer moves


def make_autopilot(seed: int, mean_hold: float, use_prob: float, motion: str = "smooth",
                   meanings=ACTION_MEANINGS) -> Any:
    """The attract-mode walker: the recording policy ``explore`` over the bare action set.

    It acts once a move; in a tile-step world a move goes 4x as far, so ``mean_hold``
    (in smooth frames) is divided by 4 to keep the distance walked one way."""
    from envs.policies import ExplorePolicy

    hold = max(1.0, mean_hold / TILE_HOLD) if motion == "tile" else mean_hold
    return ExplorePolicy(_ActionsOnly(meanings), np.random.default_rng(seed), mean_hold=hold, use_prob=use_prob,
                         noop_prob=0.0)


class KioskApp(PlayApp):
    """The play window with kiosk rules (see the module docstring).

    ``source`` is normally a :class:`demos.watchdog.Watchdog`; ``hotkeys`` an
    :class:`demos.hotkeys.OperatorHotkeys`; ``clock`` drives every kiosk timer.
    """

    def __init__(self, source: Any, kiosk: KioskConfig, config: PlayConfig, *, hotkeys: Any,
                 clock: Callable[[], float] = time.monotonic, input: Any = None, log: logging.Logger = LOG):
        super().__init__(source, config, input=input)
        self.kiosk = kiosk
        self.hotkeys = hotkeys
        self.now = clock  # kiosk timers (self.clock is the window's pygame Clock)
        self.log = log
        self.attract = False
        self.autopilot = make_autopilot(kiosk.world.seed, kiosk.attract.mean_hold, kiosk.attract.use_prob,
                                        self.motion, self.meanings)
        self.autopilot_pace = self.move_pacer()  # None: a move every frame (smooth worlds)
        self.playlist_index = -1
        self.start_prompt = kiosk.world.prompt or None
        self.fresh_worlds = 0
        self.hotkey_problem: str | None = None
        now = clock()
        self.last_input = now
        self.world_started = now
        self.session_started: float | None = None  # a visitor's first key in this world
        self._next_prompt_at = now
        self._next_stats_at = now + kiosk.log.stats_seconds
        self._stats_frames, self._stats_misses = 0, 0

    # -- lifetime ---------------------------------------------------------------------
    def open(self) -> None:
        super().open()
        from demos._pygame import import_pygame

        pygame = import_pygame()
        if not self.config.headless:
            pygame.mouse.set_visible(False)
        self.hotkey_problem = self.hotkeys.start()
        if self.hotkey_problem:  # said once: log, terminal and screen
            note = f"operator hotkeys in the window only ({self.hotkeys.describe()}): {self.hotkey_problem}"
            self.log.warning(note)
            print(f"echo-infinity kiosk: {note}", file=sys.stderr)
            self.toast(f"operator keys work in this window only: {self.hotkey_problem}", warn=True)
        else:
            self.log.info("operator hotkeys global (pynput): %s", self.hotkeys.describe())
        self.log.info("kiosk open: %s source, %dx%d picture on a %dx%d screen, seed %d",
                      self.source.name, *self.size, *self.display.get_size(), self.config.seed)

    def _open_display(self, size: tuple[int, int]) -> Any:
        """Fullscreen (or a window of display.window_size); the picture is a centred square in it."""
        from demos._pygame import import_pygame

        pygame = import_pygame()
        d = self.kiosk.display
        if d.fullscreen and not self.config.headless:
            self.display = pygame.display.set_mode((0, 0), pygame.FULLSCREEN)
            if d.grab:
                pygame.event.set_grab(True)
        else:
            self.display = pygame.display.set_mode(tuple(d.window_size))
        W, H = self.display.get_size()
        R = self.config.resolution
        side = min(W, H) if d.smooth else max(R, min(W, H) // R * R)  # integer scale keeps pixels sharp
        rect = pygame.Rect((W - side) // 2, (H - side) // 2, side, side)
        self.display.fill((0, 0, 0))
        return self.display.subsurface(rect)

    def close(self) -> None:
        if not self._closed:
            self.hotkeys.stop()
            self.log.info("kiosk closed after %d frames, %d fresh worlds, %d watchdog restarts",
                          self.summary.frames, self.fresh_worlds, getattr(self.source, "restarts", 0))
        super().close()

    def request_quit(self, why: str) -> None:
        self.log.info("quit: %s", why)
        self.running = False

    # -- one frame --------------------------------------------------------------------
    def tick(self) -> bool:
        for command in self.hotkeys.poll():
            self._operator(command)
        if not self.running:
            return False
        return super().tick()  # input, then _advance: timers, action, step

    def _timers(self) -> None:
        """Attract mode, the playlist, idle resets, the session cap, periodic stats."""
        now = self.now()
        a, s = self.kiosk.attract, self.kiosk.session
        idle = now - self.last_input
        if not self.attract and idle >= a.idle_seconds:
            self._enter_attract(idle)
        if self.attract and a.playlist and now >= self._next_prompt_at:
            self.next_prompt("attract")
        if idle >= s.idle_reset_seconds and now - self.world_started >= s.idle_reset_seconds:
            self.fresh_world(f"idle for {idle:.0f} s")
        if self.session_started is not None and now - self.session_started >= s.max_seconds:
            self.fresh_world(f"session cap of {s.max_seconds:g} s")
            self.toast("Time is up: a fresh world for the next explorer")
        if self.kiosk.log.stats_seconds and now >= self._next_stats_at:
            self._log_stats(now)

    def _choose_action(self, held: Any) -> int:
        action = super()._choose_action(held)
        if not self.attract:
            return action
        if self.autopilot_pace is not None and not self.autopilot_pace.due():
            return self.noop  # between tile steps: the world animates, the autopilot waits
        return self.autopilot.act({})

    def _advance(self, held: Any) -> int | None:
        """After this frame's input: timers (which see it), then the step."""
        if self.movement.direction(held) != self.noop:
            self._activity()  # a held movement key is someone playing
        self._timers()
        action = super()._advance(held)
        if restarted := self.info.get("restarted"):
            self.world_started = self.now()
            self.end_frames = 0
            self.episode_events = []
            self.toast("Oops, the world glitched: it starts again", warn=True)
            self.log.info("the window goes on after a watchdog restart (%s)", restarted)
        return action

    # -- input ------------------------------------------------------------------------
    def _handle(self, event: Any) -> None:
        from demos._pygame import import_pygame

        pygame = import_pygame()
        if event.type == pygame.QUIT:
            self.log.info("window close ignored (operator quit: %s)", self.hotkeys.bindings["quit"])
            return
        if event.type == pygame.KEYDOWN:
            if command := self.hotkeys.match(event):
                if self.hotkeys.in_window:
                    self._operator(command)
                return  # the operator's keys are never a visitor's (pynput has them when it runs)
            if event.key in _modifier_keys(pygame):
                return  # ctrl / alt on their own: maybe the operator reaching for a hotkey
            self._activity()
            if self.typing is None:
                if event.key == pygame.K_ESCAPE and not self.show_help:
                    return  # visitors cannot quit
                if event.key in (pygame.K_r, pygame.K_F12):
                    return  # no recordings or screenshots filling the disk
                if event.key == pygame.K_t and not self.kiosk.session.visitor_prompts:
                    return
        super()._handle(event)

    def _activity(self) -> None:
        now = self.now()
        self.last_input = now
        if self.attract:
            self.attract = False
            self.log.info("a visitor took over from the autopilot")
        if self.session_started is None:
            self.session_started = now
            self.log.info("visitor session started (world seed %d)", self.config.seed)

    def _operator(self, command: str) -> None:
        self.log.info("operator: %s", command)
        if command == "quit":
            self.request_quit("operator hotkey")
        elif command == "reset":
            self.fresh_world("operator reset")
        elif command == "next_prompt":
            self.next_prompt("operator")

    # -- what the kiosk does ----------------------------------------------------------
    def _enter_attract(self, idle: float) -> None:
        self.attract = True
        self.typing = None
        self.show_help = False
        self.session_started = None
        self.autopilot.reset({})
        if self.autopilot_pace is not None:
            self.autopilot_pace.restart()
        self._next_prompt_at = self.now()  # the playlist starts at once
        self.log.info("attract mode on after %.0f s idle", idle)

    def next_prompt(self, why: str) -> None:
        """The next playlist prompt, live (no reset)."""
        playlist = self.kiosk.attract.playlist
        self._next_prompt_at = self.now() + self.kiosk.attract.prompt_seconds
        if not playlist:
            return
        self.playlist_index = (self.playlist_index + 1) % len(playlist)
        text = playlist[self.playlist_index]
        if self.apply_prompt(text):
            self.log.info("prompt (%s): %s", why, text)
        else:
            self.log.warning("playlist prompt %r not applied", text)

    def fresh_world(self, why: str) -> None:
        """A new world: the next seed (world.new_seed), the start prompt (the playlist's in attract mode)."""
        now = self.now()
        self.fresh_worlds += 1
        if self.kiosk.world.new_seed:
            self.config.seed = self.kiosk.world.seed + self.fresh_worlds
        self.prompt = self.prompt if self.attract else self.start_prompt
        self.typing = None
        self._reset_world()
        self.world_started = now
        self.session_started = None
        self.log.info("fresh world (%s): seed %d, prompt %r", why, self.config.seed, self.prompt)

    def _log_stats(self, now: float) -> None:
        frames = self.summary.frames - self._stats_frames
        misses = self.summary.misses - self._stats_misses
        self.log.info("stats: %d frames in the last %.0f s, %d budget misses (%.1f%%), %d watchdog restarts, %s",
                      frames, self.kiosk.log.stats_seconds, misses, 100 * misses / max(1, frames),
                      getattr(self.source, "restarts", 0), "attract" if self.attract else "visitor")
        self._stats_frames, self._stats_misses = self.summary.frames, self.summary.misses
        self._next_stats_at = now + self.kiosk.log.stats_seconds

    # -- drawing ----------------------------------------------------------------------
    def _draw(self) -> None:
        super()._draw()
        if self.attract and not self.show_help:
            lines = ["arrows / WASD walk, space uses, T new prompt, F1 all keys"]
            if self.prompt:
                lines.append(f"now: {self.prompt}")
            self.overlay.card(self.screen, CARD_TITLE, lines, blink=(self.summary.frames // 15) % 2 == 0)
        elif self.session_started is not None:
            left = self.kiosk.session.max_seconds - (self.now() - self.session_started)
            if left <= COUNTDOWN_S:
                self.overlay.corner(self.screen, f"fresh world in {max(0, int(left + 0.999))} s")


def _modifier_keys(pygame: Any) -> frozenset[int]:
    names = ("K_LCTRL", "K_RCTRL", "K_LALT", "K_RALT", "K_LSHIFT", "K_RSHIFT", "K_LGUI", "K_RGUI", "K_MODE")
    return frozenset(getattr(pygame, n) for n in names if hasattr(pygame, n))


# -- setting up -----------------------------------------------------------------------
def setup_logging(kiosk: KioskConfig) -> logging.Logger:
    """The rotating log file for the kiosk and its watchdog (directory created)."""
    path = Path(kiosk.log.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=kiosk.log.max_bytes,
                                                   backupCount=kiosk.log.backups, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("echo_infinity")
    for old in [h for h in root.handlers if getattr(h, "_kiosk", False)]:
        root.removeHandler(old)
        old.close()
    handler._kiosk = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(kiosk.log.level)
    return LOG


def pick_source(kiosk: KioskConfig) -> str:
    """model / teacher from world.source ("auto": the model when its checkpoint exists)."""
    from demos.source import checkpoint_problem

    w = kiosk.world
    problem = checkpoint_problem(w.checkpoint or DEFAULT_CHECKPOINT)
    if w.source == "model" and problem:
        raise ConfigError(f"world.source = 'model': {problem} (train one with `make train`, or set "
                          "world.checkpoint, or world.source = 'auto' to fall back to the teacher game)")
    if w.source == "auto":
        return "teacher" if problem else "model"
    return w.source


def model_speed(w: WorldSection, headless: bool, log: logging.Logger) -> WorldSection:
    """The world section with backend, threads and fps made explicit: what the TOML left on auto
    ("auto", 0) is calibrated once here (cached per machine and checkpoint) and logged, so a
    watchdog restart rebuilds the same world. Headless (scripted) runs take the defaults."""
    if headless:
        return dataclasses.replace(w, backend="torch" if w.backend == "auto" else w.backend,
                                   threads=w.threads or 1, fps=w.fps or 20.0)
    if w.backend != "auto" and w.threads and w.fps:
        return w
    from demos.source import calibrate_for

    choice = calibrate_for(w.checkpoint or DEFAULT_CHECKPOINT, w.backend, w.threads or None, w.fps or None,
                           w.device, w.policy or None, say=log.info)
    return dataclasses.replace(w, backend=choice.backend, threads=choice.threads, fps=choice.fps)


def source_factory(kiosk: KioskConfig, source: str) -> Callable[[], Any]:
    """What the watchdog calls to build (and after a stall, rebuild) the world."""
    from demos.source import make_source

    w = kiosk.world

    def build() -> Any:
        if source == "teacher":
            return make_source("teacher", resolution=64)
        return make_source("model", checkpoint=w.checkpoint or DEFAULT_CHECKPOINT, fps=w.fps, backend=w.backend,
                           threads=w.threads, policy=w.policy or None, start=w.start, text_encoder=w.text_encoder,
                           device=w.device)

    return build


def build_kiosk(kiosk: KioskConfig, *, headless: bool = False, frames: int | None = None,
                clock: Callable[[], float] = time.monotonic, input: Any = None, log: logging.Logger = LOG) -> KioskApp:
    """The kiosk app for a validated config (source picked, watchdog and hotkeys built; not opened)."""
    from demos.hotkeys import OperatorHotkeys
    from demos.watchdog import Watchdog

    name = pick_source(kiosk)
    if name == "teacher" and kiosk.world.source == "auto":
        log.warning("no checkpoint at %s: the kiosk shows the teacher game", kiosk.world.checkpoint or DEFAULT_CHECKPOINT)
    if name == "model":
        kiosk = dataclasses.replace(kiosk, world=model_speed(kiosk.world, headless, log))
    elif not kiosk.world.fps:  # the teacher runs at its own 20 fps
        kiosk = dataclasses.replace(kiosk, world=dataclasses.replace(kiosk.world, fps=20.0))
    w = kiosk.world
    # A window never waits longer than a frame for the model; a headless (scripted) run waits
    # for every frame, up to the stall limit, so it is deterministic however loaded the machine.
    frame_wait = kiosk.watchdog.stall_seconds if headless else 1.0 / w.fps
    watchdog = Watchdog(source_factory(kiosk, name), stall_s=kiosk.watchdog.stall_seconds,
                        frame_wait_s=frame_wait, retry_s=kiosk.watchdog.retry_seconds, clock=clock,
                        log=logging.getLogger("echo_infinity.watchdog"))
    config = PlayConfig(seed=w.seed, prompt=w.prompt or None, fps=0 if headless else w.fps, smooth=kiosk.display.smooth,
                        resolution=watchdog.resolution, source=name, motion=watchdog.motion, move_rate=w.move_rate,
                        headless=headless, frames=frames,
                        hud=kiosk.display.hud, save_dir=Path(kiosk.session.save_dir))
    hotkeys = OperatorHotkeys(kiosk.operator_bindings, use_global=kiosk.operator.global_hotkeys and not headless,
                              off_reason="a headless run" if headless else "global hotkeys are off in the config")
    return KioskApp(watchdog, kiosk, config, hotkeys=hotkeys, clock=clock, input=input, log=log)


# -- command line ---------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``echo-infinity kiosk`` options."""
    parser.add_argument("--config", type=Path, required=True,
                        help="kiosk TOML file (documented sample: demos/kiosk.toml)")
    parser.add_argument("--check", action="store_true", help="validate the config, print a summary and exit")
    parser.add_argument("--headless", action="store_true",
                        help="no screen: SDL dummy driver, a window instead of fullscreen, nobody at the keys, unthrottled")
    parser.add_argument("--frames", type=int, default=None, help="stop after N frames (default: until the operator quits)")


def main(args: argparse.Namespace) -> int:
    """Run the kiosk; 2 on a bad config or no display."""
    try:
        kiosk = load_config(args.config)
        if args.frames is not None and args.frames < 1:
            raise ConfigError(f"--frames must be at least 1, got {args.frames}")
        pick_source(kiosk)
    except ConfigError as e:
        print(f"echo-infinity kiosk: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"echo-infinity kiosk: {args.config} is valid: {pick_source(kiosk)} source, seed {kiosk.world.seed}, "
              f"attract after {kiosk.attract.idle_seconds:g} s, {len(kiosk.attract.playlist)} playlist prompts, "
              f"log {kiosk.log.file}")
        return 0
    if not args.headless and (problem := display_problem()):
        print(f"echo-infinity kiosk: cannot open a screen: {problem} (try it with --headless, or under xvfb-run -a)",
              file=sys.stderr)
        return 2
    if args.headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    log = setup_logging(kiosk)
    log.info("kiosk starting with %s", args.config)
    try:
        app = build_kiosk(kiosk, headless=args.headless, frames=args.frames)
    except (ValueError, FileNotFoundError) as e:
        log.error("cannot start: %s", e)
        print(f"echo-infinity kiosk: {e}", file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, lambda *_: app.request_quit("SIGTERM"))
    try:
        summary = app.run()
    except NoDisplay as e:
        print(f"echo-infinity kiosk: cannot open a screen: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        summary = app.summary
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"kiosk: {summary.frames} frames in {summary.seconds:.1f} s, {app.fresh_worlds} fresh worlds, "
          f"{getattr(app.source, 'restarts', 0)} watchdog restarts")
    return 0


if __name__ == "__main__":  # python -m demos.kiosk
    _parser = argparse.ArgumentParser(prog="python -m demos.kiosk", description=__doc__.split("\n\n")[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
