"""The play window under SDL's dummy video driver, driven by synthetic key events.

Key presses go through the real pygame event queue (``pygame.event.post``);
held keys through a patched ``pygame.key.get_pressed``, the one call the
window reads them from. The teacher source and the world model (a random-init
tiny checkpoint with the hash text encoder, fixed denoising steps so frames
are deterministic) both run on CPU, in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
pygame = pytest.importorskip("pygame")
cv2 = pytest.importorskip("cv2")

torch = pytest.importorskip("torch")

from demos import play  # noqa: E402
from demos.keys import HeldKeys, Movement, Pacer, key_event, text_event  # noqa: E402
from demos.source import (  # noqa: E402
    DOWN,
    LEFT,
    NOOP,
    RIGHT,
    UP,
    CompareSource,
    FrameSource,
    ModelSource,
    SnapshotSource,
    TeacherSource,
)




def model_source(ckpt, **options):
    options.setdefault("steps", 2)  # fixed steps: the same inputs give the same frames
    return ModelSource(ckpt, text_encoder="hash", **options)


@pytest.fixture
def make_app(tmp_path, monkeypatch):
    """Open PlayApps on the dummy driver; the held keys are whatever ``held`` holds."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    held: set[int] = set()
    monkeypatch.setattr(pygame.key, "get_pressed", lambda: HeldKeys(held))
    apps = []

    def make(source=None, **config):
        config.setdefault("seed", 0)
        config.setdefault("prompt", "green meadow at noon under clear skies")
        config.setdefault("fps", 0)  # unthrottled: the tests need no real time
        cfg = play.PlayConfig(screenshot_dir=tmp_path / "shots", record_dir=tmp_path / "rec", save_dir=tmp_path / "saves", **config)
        app = play.PlayApp(source or TeacherSource(cfg.resolution), cfg)
        app.held = held
        app.open()
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def press(*events):
    for event in events:
        pygame.event.post(event)


def ticks(app, n):
    for _ in range(n):
        assert app.tick()


def test_teacher_source_is_a_frame_source():
    assert isinstance(TeacherSource(), FrameSource)


def test_moving_changes_the_frame(make_app):
    still = make_app()
    ticks(still, 6)
    still_frame, still_info = still.frame.copy(), dict(still.info)
    still.close()

    walker = make_app()
    walker.held.add(pygame.K_RIGHT)  # held: repeats every frame
    ticks(walker, 6)
    assert walker.info["facing"] == "RIGHT"
    assert walker.info["frame"] == still_info["frame"] == 6
    assert not np.array_equal(walker.frame, still_frame)  # same frame index, same weather: only the move differs
    x0, _ = still_info["position"]
    x1, _ = walker.info["position"]
    assert x1 >= x0  # blocked by a tree at worst, never moved the wrong way


def test_most_recent_movement_key_wins():
    pygame.init()
    movement = Movement()
    held = HeldKeys({pygame.K_UP, pygame.K_RIGHT})
    assert movement.action(held) == UP  # presses not seen: fixed order UP > DOWN > LEFT > RIGHT
    movement.observe(key_event("K_UP"))
    movement.observe(key_event("K_RIGHT"))
    assert movement.action(held) == RIGHT
    movement.observe(key_event("K_a"))
    assert movement.action(HeldKeys({pygame.K_UP, pygame.K_RIGHT, pygame.K_a})) == LEFT
    assert movement.action(HeldKeys({pygame.K_UP})) == UP  # released keys drop out
    assert movement.action(HeldKeys()) == NOOP


def test_pacer_spreads_8_moves_over_20_frames():
    pacer = Pacer(8, 20)
    assert [i for i in range(40) if pacer.due()] == [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28, 30, 33, 35, 38]
    pacer.restart()
    assert pacer.due() and not pacer.due()
    assert all(Pacer(None, 20).due() for _ in range(5)) and all(Pacer(30, 20).due() for _ in range(5))
    with pytest.raises(ValueError, match="move rate"):
        Pacer(0, 20)


def test_held_key_in_a_tile_world_moves_8_times_a_second(make_app):
    app = make_app(source=TeacherSource(motion="tile"), fps=20)
    assert app.movement.pacer is not None and ("moves", "tile steps, 8/s held") in app.hud_fields()
    right = HeldKeys({pygame.K_RIGHT})
    actions = [app._choose_action(right) for _ in range(20)]  # held from before: the first frame moves
    assert actions.count(RIGHT) == 8 and actions.count(NOOP) == 12 and actions[0] == RIGHT
    assert app._choose_action(right) == RIGHT  # frame 20: the next slot
    app.movement.observe(key_event("K_UP"))  # a fresh press on a between-slots frame moves at once
    assert app._choose_action(HeldKeys({pygame.K_RIGHT, pygame.K_UP})) == UP
    assert app._choose_action(HeldKeys({pygame.K_RIGHT, pygame.K_UP})) == NOOP  # then the pace again
    app.movement.observe(key_event("K_UP", down=False))
    app.movement.observe(key_event("K_DOWN"))  # a tap: down and up before the frame reads it
    app.movement.observe(key_event("K_DOWN", down=False))
    assert [app._choose_action(HeldKeys()) for _ in range(3)] == [DOWN, NOOP, NOOP]


def test_tile_world_keeps_animating_between_moves(make_app):
    app = make_app(source=TeacherSource(motion="tile"))  # unthrottled: the pace counts 20 fps frames
    x0, y0 = app.info["position"]
    app.held.add(pygame.K_RIGHT)
    ticks(app, 20)
    assert app.info["frame"] == 20  # one world frame per tick, moves or not
    steps = [e for e in app.episode_events if e[0] == "step"]
    assert sum(n for _, a, n in steps if a == RIGHT) == 8 and sum(n for _, a, n in steps if a == NOOP) == 12
    x1, y1 = app.info["position"]
    assert y1 == y0 and x1 - x0 in range(0, 8 * 8 + 1, 8)  # whole tiles (a tree may stop it)


def test_held_key_in_a_smooth_world_moves_every_frame(make_app):
    app = make_app(fps=20)
    assert app.movement.pacer is None
    assert [app._choose_action(HeldKeys({pygame.K_RIGHT})) for _ in range(20)] == [RIGHT] * 20
    app.movement.observe(key_event("K_DOWN"))
    app.movement.observe(key_event("K_DOWN", down=False))
    assert app._choose_action(HeldKeys()) == NOOP  # a press not held when read: no move, as before


def test_prompt_box_applies_a_prompt_live(make_app):
    app = make_app()
    ticks(app, 2)
    assert app.info["style"]["biome"] == "grassland"
    press(key_event("K_t", text="t"), text_event("t"))  # SDL sends a T press as a key and as text
    ticks(app, 1)
    assert app.typing == ""  # the T that opened the box is not typed into it
    position = app.info["position"]
    app.held.add(pygame.K_d)  # typing "d" must not walk the player
    press(text_event("volcanic lava fields at night"), key_event("K_d", text="d"))
    ticks(app, 1)
    app.held.clear()
    press(key_event("K_RETURN"))
    ticks(app, 3)
    assert app.typing is None
    assert app.info["position"] == position and app.info["facing"] == "DOWN"
    assert app.info["style"] == {"biome": "volcanic", "time_of_day": "night", "weather": "clear"}
    assert app.prompt == "volcanic lava fields at night"
    assert app.info["frame"] == 7  # no reset: the same world went on


def test_bad_prompt_is_reported_and_changes_nothing(make_app):
    app = make_app()
    ticks(app, 1)
    style = app.info["style"]
    press(key_event("K_t"), text_event("qwerty zxcv"), key_event("K_RETURN"))
    ticks(app, 2)
    assert app.info["style"] == style
    assert any(warn and "prompt not applied" in text for _, text, warn in app.toast_list)
    press(key_event("K_t"), text_event("desert"), key_event("K_ESCAPE"))  # Esc cancels, does not quit
    assert app.tick()
    assert app.info["style"] == style


def test_f12_writes_a_screenshot(make_app, tmp_path):
    app = make_app(hud=True)
    ticks(app, 3)
    press(key_event("K_F12"))
    ticks(app, 1)
    shots = list((tmp_path / "shots").glob("*.png"))
    assert shots == [app.last_screenshot]
    assert pygame.image.load(str(shots[0])).get_size() == (512, 512)


def test_r_records_an_mp4_and_an_action_log(make_app, tmp_path):
    app = make_app()
    ticks(app, 2)
    press(key_event("K_r"))
    app.held.add(pygame.K_RIGHT)
    ticks(app, 12)
    press(key_event("K_r"))
    ticks(app, 2)
    videos = list((tmp_path / "rec").glob("*.mp4"))
    assert len(videos) == 1
    cap = cv2.VideoCapture(str(videos[0]))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    assert len(frames) == 12
    assert frames[0].shape == (512, 512, 3)
    log = json.loads(videos[0].with_suffix(".actions.json").read_text())
    assert [f["action"] for f in log["frames"]] == [RIGHT] * 12
    assert log["seed"] == 0 and log["start"]["before"] == [["step", NOOP, 2]]


def test_teacher_says_saving_needs_the_world_model(make_app):
    app = make_app()
    press(key_event("K_F5"), key_event("K_BACKSPACE"))
    ticks(app, 1)
    notes = [text for _, text, _ in app.toast_list]
    assert any("F5" in t and "--source model" in t for t in notes)
    assert any("rewind" in t and "--source model" in t for t in notes)


class _HazardAtStep3:
    """A tiny frame source whose episode ends on its third step."""

    name, resolution, can_snapshot = "fake", 64, False

    def __init__(self):
        self.resets: list[tuple[int, str | None]] = []

    def reset(self, seed, prompt=None):
        self.resets.append((seed, prompt))
        self.t = 0
        return np.zeros((64, 64, 3), np.uint8)

    def step(self, action):
        self.t += 1
        return np.full((64, 64, 3), self.t, np.uint8), 0.0, self.t == 3, {"frame": self.t, "end_reason": "lava!"}

    def set_prompt(self, text):
        pass

    def hud_fields(self, info):
        return []

    def close(self):
        pass


class _Snapshotting(_HazardAtStep3):
    """The fake source with save/load/rewind, recording what the window asked for."""

    can_snapshot = True

    def __init__(self):
        super().__init__()
        self.calls = []

    def save(self, path):
        self.calls.append(("save", path.name))
        return path

    def load(self, path):
        self.calls.append(("load", path.name))
        if ("save", path.name) not in self.calls:
            raise ValueError("nothing saved yet")
        return np.full((64, 64, 3), 200, np.uint8)

    def rewind(self, seconds):
        self.calls.append(("rewind", seconds))
        return np.full((64, 64, 3), 100, np.uint8)


def test_hazard_shows_a_message_then_restarts_the_same_seed(make_app):
    source = _HazardAtStep3()
    app = make_app(source=source, seed=7, prompt=None, hud=True)
    ticks(app, 3)
    assert app.end_frames > 0 and app.end_reason == "lava!"
    ticks(app, app.end_frames)
    assert source.resets == [(7, None), (7, None)]
    assert app.summary.episodes_ended == 1
    ticks(app, 1)
    assert app.end_frames == 0 and source.t == 1


def test_save_load_rewind_reach_a_source_that_can_snapshot(make_app):
    source = _Snapshotting()
    app = make_app(source=source, prompt=None)
    press(key_event("K_F9"))  # nothing saved: the failure is shown, the window goes on
    ticks(app, 1)
    assert any(warn and "F9 load failed" in text for _, text, warn in app.toast_list)
    press(key_event("K_F5"))
    ticks(app, 1)
    app.toast_list.clear()
    press(key_event("K_F9"))
    assert app.tick() and source.calls[-1] == ("load", "quicksave-fake.snapshot")
    assert [text for _, text, _ in app.toast_list] == ["loaded the world"]
    press(key_event("K_BACKSPACE"))
    assert app.tick() and source.calls[-1] == ("rewind", play.REWIND_S)


def test_esc_quits(make_app):
    app = make_app()
    press(key_event("K_F1"), key_event("K_ESCAPE"))
    assert app.tick() and not app.show_help  # first Esc closes the help
    press(key_event("K_ESCAPE"))
    assert not app.tick()


def _parse(argv):
    parser = argparse.ArgumentParser()
    play.add_arguments(parser)
    return parser.parse_args(argv)


def test_headless_run_of_50_frames(monkeypatch, capsys):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # restored after the test
    assert play.main(_parse(["--source", "teacher", "--headless", "--frames", "50"])) == 0
    out = capsys.readouterr().out
    assert out.startswith("play: 50 frames") and "prompt changes 1" in out
    assert re.search(r"budget 20 fps: \d+ of 50 frames late \(\d+\.\d%\)", out)  # what a hold test reads


def test_summary_line_counts_budget_misses():
    s = play.PlaySummary(frames=200, seconds=10.0, fps_budget=20, misses=3)
    assert "budget 20 fps: 3 of 200 frames late (1.5%)" in s.line("model", 64)
    assert "late" not in play.PlaySummary(frames=200, seconds=10.0).line("model", 64)  # unthrottled: no budget


def test_no_display_is_a_clear_error(monkeypatch, capsys):
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert play.main(_parse([])) == 2
    err = capsys.readouterr().err
    assert "--headless" in err and "xvfb-run" in err and "Traceback" not in err


def test_bad_options_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    assert play.main(_parse(["--headless", "--frames", "0"])) == 2
    assert play.main(_parse(["--source", "teacher", "--headless", "--prompt", "xyzzy plugh"])) == 2
    assert "--prompt" in capsys.readouterr().err


def test_options_do_not_import_pygame():
    code = (
        "import argparse, sys; from demos import play; "
        "p = argparse.ArgumentParser(); play.add_arguments(p); p.parse_args(['--seed', '3']); "
        "assert 'pygame' not in sys.modules, 'pygame imported by the options'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


# -- the world model ----------------------------------------------------------------------
def test_model_source_is_a_snapshot_source(ckpt):
    source = model_source(ckpt)
    assert isinstance(source, SnapshotSource) and source.can_snapshot and source.resolution == 64
    frame = source.reset(3)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert source.prompt == source.info["caption"]  # no prompt: the teacher's caption for the seed
    assert source.motion == source.meta["motion"] == "tile"  # the tiny preset's game.motion
    teacher = TeacherSource(motion="tile")
    assert np.array_equal(frame, teacher.reset(3))  # --start teacher: the teacher's first frame, same motion
    generated = model_source(ckpt, start="generated")
    assert not np.array_equal(generated.reset(3, "a snowy forest"), frame)


def test_moving_changes_the_model_frame(make_app, ckpt):
    def run(held_key=None):
        app = make_app(source=model_source(ckpt))
        if held_key is not None:
            app.held.add(held_key)
        ticks(app, 4)
        frame, index = app.frame.copy(), app.info["frame"]
        app.close()
        app.held.clear()
        return frame, index

    still, index = run()
    again, _ = run()
    walked, walked_index = run(pygame.K_RIGHT)
    assert index == walked_index == 4
    assert np.array_equal(still, again)  # deterministic: same seed, steps and actions
    assert not np.array_equal(still, walked)  # only the held key differs


def test_prompt_box_applies_a_prompt_to_the_model(make_app, ckpt):
    def run(prompt_text=None):
        app = make_app(source=model_source(ckpt))
        ticks(app, 2)
        if prompt_text:
            press(key_event("K_t", text="t"), text_event("t"))
            ticks(app, 1)
            press(text_event(prompt_text), key_event("K_RETURN"))
            ticks(app, 3)
        else:
            ticks(app, 4)
        result = app.frame.copy(), app.info["frame"], app.source.session.prompts[0], app.prompt
        app.close()
        return result

    plain, index, _, _ = run()
    changed, changed_index, session_prompt, prompt = run("a volcanic plain at night")
    assert session_prompt == prompt == "a volcanic plain at night"
    assert changed_index == index == 6  # applied live: no reset
    assert not np.array_equal(plain, changed)


def test_save_load_rewind_on_the_model(make_app, ckpt, tmp_path):
    app = make_app(source=model_source(ckpt))
    app.held.add(pygame.K_RIGHT)
    ticks(app, 5)
    saved_frame, saved_index = app.frame.copy(), app.info["frame"]
    press(key_event("K_F5"))
    ticks(app, 1)  # keys are handled first: the world is saved before this frame's step
    assert (tmp_path / "saves" / "quicksave-model.snapshot").is_file()
    ticks(app, 20)
    assert app.info["frame"] == saved_index + 21
    app.held.clear()
    press(key_event("K_F9"))
    app.tick()  # load, then this frame's step
    assert app.info["frame"] == saved_index + 1
    press(key_event("K_F9"))
    ticks(app, 1)
    assert any("loaded the world" in text for _, text, _ in app.toast_list)
    before = app.info["frame"]
    ticks(app, 15)
    press(key_event("K_BACKSPACE"))
    ticks(app, 1)
    assert app.info["frame"] < before + 15
    assert not any(warn for _, _, warn in app.toast_list)
    # loading is exact: the saved frame comes back, and the same step follows it
    app.source.load(tmp_path / "saves" / "quicksave-model.snapshot")
    assert np.array_equal(app.source.session.frames[0], saved_frame)


def test_a_bad_model_frame_is_reported_and_play_goes_on(make_app, ckpt):
    from runtime.session import FrameError

    app = make_app(source=model_source(ckpt))
    ticks(app, 3)
    shown = app.frame.copy()

    def fail(action):
        raise FrameError("non-finite")

    app.source.session.advance = fail
    ticks(app, 1)
    assert any(warn and "bad frame" in text for _, text, warn in app.toast_list)
    assert np.array_equal(app.frame, shown)
    del app.source.session.advance  # the real method again
    ticks(app, 1)
    assert app.info["frame"] == 4


def test_screenshot_and_recording_of_the_model(make_app, ckpt, tmp_path):
    app = make_app(source=model_source(ckpt), hud=True)
    ticks(app, 2)
    press(key_event("K_F12"), key_event("K_r"))
    app.held.add(pygame.K_DOWN)
    ticks(app, 6)
    press(key_event("K_r"))
    ticks(app, 1)
    assert app.last_screenshot is not None and app.last_screenshot.is_file()
    videos = list((tmp_path / "rec").glob("*.mp4"))
    assert len(videos) == 1
    log = json.loads(videos[0].with_suffix(".actions.json").read_text())
    assert log["source"] == "model" and log["model"]["policy"] == "evolving"
    assert len(log["frames"]) == 6


def test_hud_shows_the_model_figures(make_app, ckpt):
    app = make_app(source=model_source(ckpt, steps=None), hud=True, fps=20)  # the budget picks the steps
    ticks(app, 3)
    labels = [label for label, _ in app.hud_fields()]
    for wanted in ("fps", "latency", "steps", "frame", "memory", "budget misses"):
        assert wanted in labels
    assert dict(app.hud_fields())["memory"].startswith("evolving")


def test_compare_shows_the_teacher_beside_the_model(make_app, ckpt):
    source = CompareSource(model_source(ckpt))
    app = make_app(source=source, prompt=None, hud=True)
    assert app.size == (1024, 512)
    first = app.frame
    assert np.array_equal(first[:, :64], first[:, 64:])  # the model starts from the teacher's frame
    assert source.motion == source.teacher.env.motion == "tile"  # the teacher moves as the checkpoint does
    teacher = TeacherSource(motion="tile")
    teacher.reset(0)
    app.held.add(pygame.K_LEFT)
    ticks(app, 3)
    assert app.episode_events == [["step", LEFT, 1], ["step", NOOP, 2]]  # tile steps are paced
    for action in (LEFT, NOOP, NOOP):
        truth, *_ = teacher.step(action)
    assert np.array_equal(app.frame[:, :64], truth)
    assert source.model.prompt == teacher.info["caption"]
    assert "PSNR" in dict(app.hud_fields())


def test_play_cli_runs_the_model_headless(monkeypatch, capsys, ckpt):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    argv = ["--checkpoint", str(ckpt), "--text-encoder", "hash", "--headless", "--frames", "30"]
    assert play.main(_parse(argv)) == 0
    assert "source model 64x64" in capsys.readouterr().out
    assert play.main(_parse(argv + ["--compare", "--frames", "5"])) == 0
    assert "source compare" in capsys.readouterr().out


def test_default_source_falls_back_to_the_teacher(monkeypatch, capsys, tmp_path, ckpt):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setattr(play, "DEFAULT_CHECKPOINT", tmp_path / "checkpoints" / "tiny")
    assert play.main(_parse(["--headless", "--frames", "5"])) == 0
    out, err = capsys.readouterr()
    assert "source teacher" in out
    assert len(err.strip().splitlines()) == 1 and "no trained checkpoint" in err
    assert play.main(_parse(["--source", "model", "--headless", "--frames", "5"])) == 2
    err = capsys.readouterr().err
    assert "no checkpoint" in err and "--source teacher" in err and "Traceback" not in err
    monkeypatch.setattr(play, "DEFAULT_CHECKPOINT", ckpt)  # once it ships, the model is the default
    assert play.main(_parse(["--text-encoder", "hash", "--headless", "--frames", "5"])) == 0
    assert "source model" in capsys.readouterr().out


def test_model_option_errors_exit_2(monkeypatch, capsys, ckpt):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    base = ["--checkpoint", str(ckpt), "--text-encoder", "hash", "--headless", "--frames", "5"]
    assert play.main(_parse(base + ["--resolution", "128"])) == 2
    assert play.main(_parse(base + ["--compare", "--source", "teacher"])) == 2
    assert play.main(_parse(base + ["--compare", "--start", "generated"])) == 2
    assert play.main(_parse(base + ["--motion", "smooth"])) == 2  # the checkpoint moves tile steps
    assert play.main(_parse(base + ["--move-rate", "0"])) == 2
    err = capsys.readouterr().err
    assert "--resolution" in err and "--compare" in err and "Traceback" not in err
    assert "--motion smooth" in err and "'tile'" in err and "--move-rate" in err


def test_motion_and_move_rate_options(monkeypatch, capsys, ckpt):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    config, _ = play.config_from_args(_parse(["--source", "teacher", "--motion", "tile", "--move-rate", "10"]))
    assert (config.motion, config.move_rate) == ("tile", 10.0)
    assert play.build_source(config).motion == "tile"
    config, _ = play.config_from_args(_parse(["--checkpoint", str(ckpt)]))
    assert config.source == "model" and config.motion == "tile"  # the checkpoint's game.motion
    assert play.main(_parse(["--source", "teacher", "--motion", "tile", "--headless", "--frames", "20"])) == 0
    assert "play: 20 frames" in capsys.readouterr().out
    parser = argparse.ArgumentParser()
    play.add_arguments(parser)
    assert "--move-rate" in parser.format_help() and "NOOP frames" in parser.format_help()
