"""The kiosk under SDL's dummy driver: attract mode, fresh worlds, the watchdog, operator keys, config.

Timers run on an injected clock (no sleeping); the world is a random-init tiny
checkpoint with the hash text encoder, or small fake sources that fail on cue.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
pygame = pytest.importorskip("pygame")
torch = pytest.importorskip("torch")

from demos import kiosk as kiosk_mod  # noqa: E402
from demos.hotkeys import OperatorHotkeys, parse_hotkey  # noqa: E402
from demos.keys import HeldKeys, key_event  # noqa: E402
from demos.kiosk_config import KioskConfig, config_from_dict, load_config  # noqa: E402
from demos.play import PlayConfig  # noqa: E402
from demos.source import NOOP, TeacherSource  # noqa: E402
from demos.watchdog import Watchdog  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "demos" / "kiosk.toml"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds




@pytest.fixture
def env(monkeypatch, tmp_path):
    """Dummy video driver, scripted held keys, a log file of its own."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    held: set[int] = set()
    monkeypatch.setattr(pygame.key, "get_pressed", lambda: HeldKeys(held))
    root = logging.getLogger("echo_infinity")
    yield held
    for h in [h for h in root.handlers if getattr(h, "_kiosk", False)]:
        root.removeHandler(h)
        h.close()


def kiosk_config(tmp_path, ckpt=None, **sections) -> KioskConfig:
    data = {
        "world": {"source": "model" if ckpt else "teacher", "checkpoint": str(ckpt or ""), "text_encoder": "hash",
                  "fps": 20.0},
        "attract": {"idle_seconds": 30.0, "prompt_seconds": 10.0, "playlist": ["a snowy forest", "a desert at dusk"]},
        "session": {"idle_reset_seconds": 120.0, "max_seconds": 300.0, "save_dir": str(tmp_path / "saves")},
        "operator": {"global_hotkeys": False},
        "log": {"file": str(tmp_path / "logs" / "kiosk.log"), "stats_seconds": 0.0},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_from_dict(data)


@pytest.fixture
def make_kiosk(env, tmp_path):
    apps = []

    def make(ckpt=None, clock=None, **sections):
        cfg = kiosk_config(tmp_path, ckpt, **sections)
        kiosk_mod.setup_logging(cfg)
        app = kiosk_mod.build_kiosk(cfg, headless=True, clock=clock or FakeClock())
        app.held = env
        app.open()
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def ticks(app, n):
    for _ in range(n):
        assert app.tick()


def log_text(tmp_path) -> str:
    for h in logging.getLogger("echo_infinity").handlers:
        h.flush()
    return (tmp_path / "logs" / "kiosk.log").read_text()


# -- attract mode, fresh worlds, session cap -----------------------------------------------
def test_attract_mode_starts_after_idle_and_any_key_ends_it(make_kiosk, ckpt, tmp_path):
    clock = FakeClock()
    app = make_kiosk(ckpt, clock=clock)
    ticks(app, 3)
    assert not app.attract
    clock.advance(29)
    ticks(app, 1)
    assert not app.attract
    clock.advance(2)
    ticks(app, 1)
    assert app.attract and app.prompt == "a snowy forest"  # the playlist starts at once
    assert app.source.session.prompts[0] == "a snowy forest"
    start = app.frame.copy()
    actions = [app._choose_action(HeldKeys()) for _ in range(60)]
    moves = [i for i, a in enumerate(actions) if a != NOOP]
    assert app.motion == "tile" and len(moves) == 24  # the autopilot walks tile steps, 8 a second at 20 fps
    assert min(b - a for a, b in zip(moves, moves[1:])) >= 2  # NOOP frames between: the world animates
    ticks(app, 5)
    assert not np.array_equal(app.frame, start)
    clock.advance(10)
    ticks(app, 1)
    assert app.prompt == "a desert at dusk"  # the playlist cycles
    pygame.event.post(key_event("K_LCTRL"))  # the operator reaching for a hotkey is not a visitor
    ticks(app, 1)
    assert app.attract
    pygame.event.post(key_event("K_LEFT"))
    ticks(app, 1)
    assert not app.attract and app.session_started == clock()
    text = log_text(tmp_path)
    assert "attract mode on after 31 s idle" in text and "took over from the autopilot" in text


def test_smooth_worlds_autopilot_moves_every_frame_and_visitors_are_paced_in_tile_worlds(make_kiosk, ckpt):
    clock = FakeClock()
    app = make_kiosk(clock=clock)  # the teacher source: a smooth world
    clock.advance(31)
    ticks(app, 1)
    assert app.attract and app.motion == "smooth" and app.autopilot_pace is None
    actions = [app._choose_action(HeldKeys()) for _ in range(60)]
    assert sum(a != NOOP for a in actions) > 40  # a move (nearly) every frame, as before
    tile = make_kiosk(ckpt, world={"move_rate": 5.0})
    assert tile.movement.pacer is not None and tile.config.move_rate == 5.0
    held = HeldKeys({pygame.K_RIGHT})
    assert sum(tile._choose_action(held) != NOOP for _ in range(20)) == 5  # a visitor's held key: 5 a second


def test_visitors_save_load_and_rewind_through_the_watchdog(make_kiosk, ckpt, tmp_path):
    app = make_kiosk(ckpt)
    ticks(app, 3)
    pygame.event.post(key_event("K_F5"))
    ticks(app, 12)
    pygame.event.post(key_event("K_F9"))
    ticks(app, 1)
    assert app.info["frame"] == 4  # back to the save (frame 3), then this frame's step
    pygame.event.post(key_event("K_BACKSPACE"))
    ticks(app, 1)
    assert (tmp_path / "saves" / "quicksave-model.snapshot").is_file()
    assert not any(warn for _, _, warn in app.toast_list) and app.source.restarts == 0
    assert "memory" in dict(app.hud_fields())


def test_idle_resets_to_a_fresh_world_and_the_session_is_capped(make_kiosk, ckpt, tmp_path):
    clock = FakeClock()
    app = make_kiosk(ckpt, clock=clock)
    ticks(app, 4)
    assert app.info["frame"] == 4
    clock.advance(121)
    ticks(app, 1)
    assert app.fresh_worlds == 1 and app.config.seed == 1 and app.info["frame"] == 1
    clock.advance(60)
    ticks(app, 1)
    assert app.fresh_worlds == 1  # the next idle reset comes a full period after the last
    pygame.event.post(key_event("K_d"))  # a visitor
    ticks(app, 1)
    for _ in range(5):
        clock.advance(59)
        app.held.add(pygame.K_d)  # keeps playing: never idle
        ticks(app, 1)
    assert app.fresh_worlds == 1 and app.session_started is not None
    clock.advance(10)  # 305 s after the first key
    ticks(app, 1)
    assert app.fresh_worlds == 2 and app.config.seed == 2
    assert any("Time is up" in text for _, text, _ in app.toast_list)
    assert "fresh world (session cap of 300 s)" in log_text(tmp_path)


def test_the_stats_line_counts_frames_and_budget_misses(make_kiosk, ckpt, tmp_path):
    clock = FakeClock()
    app = make_kiosk(ckpt, clock=clock, log={"stats_seconds": 60.0})
    ticks(app, 3)
    app.summary.misses += 2  # as if two frames had come late
    clock.advance(61)
    ticks(app, 1)
    # logged at the start of the frame after the period: the 3 frames before it, 2 of them late
    assert re.search(r"stats: 3 frames in the last 60 s, 2 budget misses \(66\.7%\)", log_text(tmp_path))


def test_visitors_cannot_quit_but_the_operator_can(make_kiosk, capsys, tmp_path):
    app = make_kiosk()  # teacher source; headless: hotkeys in the window
    assert app.hotkeys.in_window
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    pygame.event.post(key_event("K_ESCAPE"))
    pygame.event.post(key_event("K_F12"))
    ticks(app, 2)
    assert app.running and app.last_screenshot is None
    ctrl_alt = pygame.KMOD_LCTRL | pygame.KMOD_LALT
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_p, mod=ctrl_alt, unicode="", scancode=0))
    ticks(app, 1)
    assert app.prompt == "a snowy forest"
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_r, mod=ctrl_alt, unicode="", scancode=0))
    ticks(app, 1)
    assert app.fresh_worlds == 1
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_q, mod=ctrl_alt, unicode="", scancode=0))
    assert not app.tick()
    text = log_text(tmp_path)
    assert "window close ignored" in text and "operator: quit" in text


def test_pynput_fallback_is_announced_once_without_a_display(env, monkeypatch, capsys, tmp_path):
    for var in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    cfg = kiosk_config(tmp_path, operator={"global_hotkeys": True})
    kiosk_mod.setup_logging(cfg)
    hotkeys = OperatorHotkeys(cfg.operator_bindings, use_global=True)
    source = Watchdog(lambda: TeacherSource(), clock=FakeClock())
    app = kiosk_mod.KioskApp(source, cfg, PlayConfig(fps=0, headless=True), hotkeys=hotkeys, clock=FakeClock())
    app.open()
    try:
        ticks(app, 3)
        err = capsys.readouterr().err
        assert err.count("operator hotkeys in the window only") == 1 and "pynput" in err
        assert hotkeys.in_window
        assert log_text(tmp_path).count("operator hotkeys in the window only") == 1
        assert any(warn and "this window only" in text for _, text, warn in app.toast_list)
        ctrl_alt = pygame.KMOD_CTRL | pygame.KMOD_ALT
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_q, mod=ctrl_alt, unicode="", scancode=0))
        assert not app.tick()  # the same keys work in the window
    finally:
        app.close()


# -- the watchdog --------------------------------------------------------------------------
class FlakySource(TeacherSource):
    """The teacher game, whose step ``fail_at`` raises or blocks until released."""

    def __init__(self, fail_at: int, mode: str, release: threading.Event | None = None):
        super().__init__()
        self.fail_at, self.mode, self.release, self.steps = fail_at, mode, release, 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.fail_at:
            if self.mode == "raise":
                raise RuntimeError("boom inside generation")
            self.release.wait(30)  # a stalled frame
        return super().step(action)


def kiosk_on(source_factory, cfg, clock, stall_s=5.0, frame_wait_s=0.01):
    watchdog = Watchdog(source_factory, stall_s=stall_s, frame_wait_s=frame_wait_s, clock=clock,
                        log=logging.getLogger("echo_infinity.watchdog"))
    app = kiosk_mod.KioskApp(watchdog, cfg, PlayConfig(fps=0, headless=True),
                             hotkeys=OperatorHotkeys(cfg.operator_bindings, use_global=False), clock=clock)
    app.open()
    return app


def test_watchdog_survives_an_exception(env, tmp_path):
    cfg = kiosk_config(tmp_path)
    kiosk_mod.setup_logging(cfg)
    built = []
    app = kiosk_on(lambda: built.append(FlakySource(3, "raise")) or built[-1], cfg, FakeClock())
    try:
        ticks(app, 2)
        assert app.info["frame"] == 2
        ticks(app, 1)  # the step raises: the world restarts, the window goes on
        assert app.source.restarts == 1 and len(built) == 1  # same source, fresh world
        assert app.info.get("restarted") and app.frame is not None
        ticks(app, 4)
        assert app.info["frame"] == 4
        assert any("glitched" in text for _, text, _ in app.toast_list)
        text = log_text(tmp_path)
        assert "a frame failed: RuntimeError: boom inside generation" in text and "Traceback" in text
    finally:
        app.close()


def test_watchdog_restarts_a_stalled_frame_on_a_fresh_source(env, tmp_path):
    cfg = kiosk_config(tmp_path)
    kiosk_mod.setup_logging(cfg)
    clock, release, built = FakeClock(), threading.Event(), []
    app = kiosk_on(lambda: built.append(FlakySource(3 if not built else 0, "stall", release)) or built[-1],
                   cfg, clock, stall_s=5.0)
    try:
        ticks(app, 2)
        ticks(app, 2)  # the third step hangs: the window keeps drawing the last frame
        assert app.info.get("late") and app.source.restarts == 0 and app.running
        clock.advance(6)
        ticks(app, 1)
        assert app.source.restarts == 1 and len(built) == 2  # abandoned, rebuilt
        ticks(app, 3)
        assert app.info["frame"] == 3 and not app.info.get("late")
        assert "a frame stalled: still generating after 5 s" in log_text(tmp_path)
    finally:
        release.set()  # let the abandoned thread finish
        app.close()


def test_watchdog_survives_a_frame_error_of_the_model(make_kiosk, ckpt, tmp_path, monkeypatch):
    from runtime.session import FrameError

    app = make_kiosk(ckpt)
    ticks(app, 3)
    session = app.source.source.session
    real = session.advance
    calls = {"n": 0}

    def advance(action):
        calls["n"] += 1
        if calls["n"] == 1:
            raise FrameError("a frame came out non-finite")
        return real(action)

    monkeypatch.setattr(session, "advance", advance)
    ticks(app, 1)
    assert app.source.restarts == 1 and app.info["frame"] == 0
    ticks(app, 2)
    assert app.info["frame"] == 2
    assert "a frame failed: a frame came out non-finite" in log_text(tmp_path)


def test_a_failed_restart_keeps_the_window_up_and_retries(env, tmp_path):
    cfg = kiosk_config(tmp_path)
    kiosk_mod.setup_logging(cfg)
    clock, release, built, broken = FakeClock(), threading.Event(), [], {"on": False}

    def factory():
        if broken["on"]:
            raise FileNotFoundError("no checkpoint at checkpoints/tiny")
        built.append(FlakySource(2 if not built else 0, "stall", release))
        return built[-1]

    app = kiosk_on(factory, cfg, clock, stall_s=1.0)
    try:
        ticks(app, 2)
        broken["on"] = True
        clock.advance(2)
        ticks(app, 3)  # stalled, the rebuild fails: the last frame stays up
        assert app.source.source is None and app.running
        broken["on"] = False
        clock.advance(cfg.watchdog.retry_seconds + 1)
        ticks(app, 3)
        assert app.source.source is not None and app.info["frame"] >= 1
        assert "the restart failed" in log_text(tmp_path)
    finally:
        release.set()
        app.close()


# -- config, log, command line -------------------------------------------------------------
def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "kiosk.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("[attract]\nidle_secs = 3\n", "unknown key attract.idle_secs"),
    ("[atract]\n", "unknown key atract"),
    ("[attract]\nidle_seconds = -5\n", "attract.idle_seconds: must be > 0, got -5.0"),
    ("[attract]\nidle_seconds = 'soon'\n", "attract.idle_seconds: must be a number, got a string 'soon'"),
    ("[world]\nfps = true\n", "world.fps: must be a number, got a boolean"),
    ("[world]\nseed = 1.5\n", "world.seed: must be an integer"),
    ("[world]\nsource = 'gpu'\n", "world.source: must be one of 'auto', 'model', 'teacher'"),
    ("[display]\nwindow_size = [800]\n", "display.window_size: must be two integers"),
    ("[attract]\nplaylist = 'a forest'\n", "attract.playlist: must be a list of non-empty strings"),
    ("[operator]\nquit = 'q'\n", "operator.quit: 'q': needs at least one modifier"),
    ("[operator]\nquit = '<ctrl>+<alt>+r'\n", "operator.quit: '<ctrl>+<alt>+r' is already operator.reset"),
    ("[log]\nlevel = 'LOUD'\n", "log.level: must be one of"),
    ("[world\n", "not valid TOML"),
])
def test_bad_configs_are_rejected_in_one_line(tmp_path, capsys, text, message):
    parser = argparse.ArgumentParser()
    kiosk_mod.add_arguments(parser)
    assert kiosk_mod.main(parser.parse_args(["--config", str(_write(tmp_path, text)), "--check"])) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_model_checkpoint_is_a_clear_error(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    kiosk_mod.add_arguments(parser)
    path = _write(tmp_path, f"[world]\nsource = 'model'\ncheckpoint = '{tmp_path / 'none'}'\n")
    assert kiosk_mod.main(parser.parse_args(["--config", str(path), "--check"])) == 2
    assert "world.source = 'model'" in capsys.readouterr().err


def test_the_sample_config_is_valid_and_documents_every_key():
    from dataclasses import fields

    import tomllib

    cfg = load_config(SAMPLE)
    assert cfg == KioskConfig()  # the sample states the defaults
    raw = tomllib.loads(SAMPLE.read_text())
    lines = SAMPLE.read_text().splitlines()
    for section in fields(KioskConfig):
        assert set(raw[section.name]) == {f.name for f in fields(getattr(cfg, section.name))}
        for key in raw[section.name]:
            i = next(n for n, line in enumerate(lines) if line.startswith(f"{key} = "))
            assert lines[i - 1].startswith("#"), f"{section.name}.{key} has no comment above it"


def test_the_log_file_rotates(tmp_path, env):
    cfg = kiosk_config(tmp_path, log={"max_bytes": 2048, "backups": 2})
    log = kiosk_mod.setup_logging(cfg)
    for i in range(200):
        log.info("line %d of a long unattended day", i)
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == ["kiosk.log", "kiosk.log.1", "kiosk.log.2"]


def test_hotkeys_parse_like_pynput():
    hk = parse_hotkey("<ctrl>+<alt>+r")
    assert hk.pynput() == "<ctrl>+<alt>+r" and str(hk) == "ctrl+alt+R"
    assert parse_hotkey("<shift>+<ctrl>+<f5>").pynput() == "<ctrl>+<shift>+<f5>"
    for bad in ("r", "<ctrl>+", "<hyper>+r", "<ctrl>+rr"):
        with pytest.raises(ValueError):
            parse_hotkey(bad)


def test_kiosk_cli_headless_smoke(env, ckpt, tmp_path, capsys):
    path = _write(tmp_path, f"""
[world]
source = "model"
checkpoint = "{ckpt}"
text_encoder = "hash"
[log]
file = "{tmp_path / 'logs' / 'kiosk.log'}"
""")
    parser = argparse.ArgumentParser()
    kiosk_mod.add_arguments(parser)
    assert kiosk_mod.main(parser.parse_args(["--config", str(path), "--headless", "--frames", "10"])) == 0
    assert "kiosk: 10 frames" in capsys.readouterr().out
    assert "kiosk open: model source" in log_text(tmp_path)
