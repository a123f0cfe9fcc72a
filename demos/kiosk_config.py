"""The kiosk's configuration: one TOML file, validated before anything starts.

``echo-infinity kiosk --config kiosk.toml`` reads it with ``tomllib``. Every
section and key is optional (the defaults below are a working kiosk), and
every mistake is one line naming the key: an unknown key (a typo must not be
silently ignored), a wrong type, a value out of range. ``demos/kiosk.toml`` is
the documented sample. Relative paths are relative to the working directory
the kiosk starts in, like every other path option of ``echo-infinity``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import tomllib

SOURCES = ("auto", "model", "teacher")
BACKENDS = ("auto", "torch", "compile", "onnxruntime", "tensorrt")
POLICIES = ("", "window", "sink", "compress", "evolving", "full")
START_FRAMES = ("teacher", "generated")
TEXT_ENCODERS = ("auto", "minilm", "hash")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_PLAYLIST = (
    "a green grassland at noon under a clear sky",
    "a snowy forest at dusk in the fog",
    "a desert at dawn",
    "a swamp at night in the rain",
    "a volcanic plain at dusk",
)


class ConfigError(ValueError):
    """A bad kiosk config: the message is one line naming the file and the key."""


def _opt(default: Any, *, gt: float | None = None, ge: float | None = None, le: float | None = None,
         choices: tuple | None = None) -> Any:
    """A config field with its allowed range (checked by :func:`_check`)."""
    return field(default=default, metadata={"gt": gt, "ge": ge, "le": le, "choices": choices})


@dataclass
class WorldSection:
    source: str = _opt("auto", choices=SOURCES)
    """model, teacher, or auto: the model when the checkpoint exists, else the teacher (with a warning)."""
    checkpoint: str = ""
    """World model directory; "" = the shipped checkpoints/tiny."""
    prompt: str = ""
    """The prompt a visitor's world starts with; "" = the teacher's caption for the seed."""
    seed: int = _opt(0, ge=0)
    """Seed of the first world."""
    new_seed: bool = True
    """Each fresh world (idle, session cap, operator reset) takes the next seed; false = always `seed`."""
    fps: float = _opt(0.0, ge=0, le=240)
    """Frame budget: frames per second (the model picks its denoising steps to fit); 0 = the highest
    of 30/20/15/10 this machine holds (calibrated at start, logged)."""
    start: str = _opt("teacher", choices=START_FRAMES)
    """Model worlds start from the teacher's first frame for the seed, or a generated one."""
    backend: str = _opt("auto", choices=BACKENDS)
    """Model backend; auto = the fastest that runs here and matches eager torch (calibrated);
    a named one that cannot run here falls back to torch with a warning."""
    policy: str = _opt("", choices=POLICIES)
    """Memory policy; "" = the checkpoint's own."""
    device: str = "cpu"
    """torch device: cpu or cuda[:i]."""
    threads: int = _opt(0, ge=0, le=256)
    """torch CPU threads; 0 = the count that measured fastest."""
    text_encoder: str = _opt("auto", choices=TEXT_ENCODERS)
    """Prompt encoder; auto = the one the checkpoint was trained with."""
    move_rate: float = _opt(8.0, gt=0, le=240)
    """Tile-step worlds (a checkpoint with game.motion = "tile"): moves a second while a key is held,
    and the autopilot's pace; smooth worlds move every frame."""


@dataclass
class DisplaySection:
    fullscreen: bool = True
    """Fullscreen on the primary screen; false = a window of window_size (to try the kiosk on a desktop)."""
    window_size: list[int] = field(default_factory=lambda: [1280, 800], metadata={"ge": 64, "le": 16384})
    """[width, height] of the window when fullscreen is false."""
    smooth: bool = False
    """Smooth (bilinear) scaling of the picture instead of sharp pixels."""
    hud: bool = False
    """Start with the HUD shown (visitors can toggle it with F2)."""
    grab: bool = True
    """Grab keyboard and mouse (fullscreen only), so window-manager keys such as alt+tab stay in the kiosk."""


@dataclass
class AttractSection:
    idle_seconds: float = _opt(30.0, gt=0)
    """No key for this long: the autopilot walks the world and the playlist plays."""
    playlist: list[str] = field(default_factory=lambda: list(DEFAULT_PLAYLIST))
    """Prompts cycled in attract mode (and by the operator's next-prompt key); [] = keep the prompt."""
    prompt_seconds: float = _opt(20.0, gt=0)
    """How long each playlist prompt stays in attract mode."""
    mean_hold: float = _opt(12.0, ge=1, le=1000)
    """Autopilot momentum: mean number of frames it keeps walking one way (tile-step worlds: a quarter
    as many tile steps, the same distance)."""
    use_prob: float = _opt(0.03, ge=0, le=1)
    """Autopilot: chance per frame of pressing USE."""


@dataclass
class SessionSection:
    idle_reset_seconds: float = _opt(120.0, gt=0)
    """No key for this long: a fresh world (again every idle_reset_seconds while nobody plays)."""
    max_seconds: float = _opt(600.0, gt=0)
    """A visitor's world is replaced by a fresh one after this long (counted from their first key)."""
    visitor_prompts: bool = True
    """Visitors may type prompts (T)."""
    save_dir: str = "saves"
    """Where F5 saves the world (one quicksave, shared by all visitors)."""


@dataclass
class WatchdogSection:
    stall_seconds: float = _opt(5.0, gt=0, le=3600)
    """A frame still generating after this long is a stall: the world restarts on a fresh model."""
    retry_seconds: float = _opt(10.0, gt=0, le=3600)
    """When a restart itself fails, try again after this long (the last picture stays up)."""


@dataclass
class OperatorSection:
    reset: str = "<ctrl>+<alt>+r"
    """Fresh world."""
    next_prompt: str = "<ctrl>+<alt>+p"
    """Next playlist prompt."""
    quit: str = "<ctrl>+<alt>+q"
    """Quit the kiosk (the only way out: Esc and closing the window are ignored)."""
    global_hotkeys: bool = True
    """Global hotkeys through pynput (work without focus); false, or where pynput cannot start: in-window."""


@dataclass
class LogSection:
    file: str = "logs/kiosk.log"
    """Rotating log file (its directory is created)."""
    max_bytes: int = _opt(1_000_000, ge=1024)
    """Rotate when the file reaches this size."""
    backups: int = _opt(5, ge=0, le=1000)
    """Rotated files kept (kiosk.log.1 ... kiosk.log.N)."""
    level: str = _opt("INFO", choices=LOG_LEVELS)
    """Least severe level written."""
    stats_seconds: float = _opt(300.0, ge=0)
    """Log fps, budget misses and restarts this often; 0 = never."""


@dataclass
class KioskConfig:
    world: WorldSection = field(default_factory=WorldSection)
    display: DisplaySection = field(default_factory=DisplaySection)
    attract: AttractSection = field(default_factory=AttractSection)
    session: SessionSection = field(default_factory=SessionSection)
    watchdog: WatchdogSection = field(default_factory=WatchdogSection)
    operator: OperatorSection = field(default_factory=OperatorSection)
    log: LogSection = field(default_factory=LogSection)

    @property
    def operator_bindings(self) -> dict[str, str]:
        return {"reset": self.operator.reset, "next_prompt": self.operator.next_prompt, "quit": self.operator.quit}


def load_config(path: str | Path) -> KioskConfig:
    """Read and validate a kiosk TOML file; ConfigError (one line) on any problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read it ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    try:
        return config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def config_from_dict(data: dict[str, Any]) -> KioskConfig:
    """Build a KioskConfig from parsed TOML; ConfigError naming the key on a problem."""
    config = _build(KioskConfig, data, "")
    _check_cross(config)
    return config


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a table ([{where}]), got {_tname(data)}")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key {where + '.' if where else ''}{key} "
                              f"(known {'keys of [' + where + ']' if where else 'sections'}: {', '.join(known)})")
    values = {}
    for name, f in known.items():
        if name not in data:
            continue
        dotted = f"{where}.{name}" if where else name
        hint = hints[name]
        if is_dataclass(hint):
            values[name] = _build(hint, data[name], dotted)
        else:
            values[name] = _check(dotted, data[name], hint, f.metadata)
    return cls(**values)


def _check(key: str, value: Any, hint: Any, meta: Any) -> Any:
    """Type and range of one value; returns it converted (int -> float where a float is wanted)."""
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false, got {_tname(value)} {value!r}")
    elif hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}: must be an integer, got {_tname(value)} {value!r}")
    elif hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: must be a number, got {_tname(value)} {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be a finite number, got {value}")
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: must be a string, got {_tname(value)} {value!r}")
    elif hint == list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConfigError(f"{key}: must be a list of non-empty strings, got {value!r}")
        return value
    elif hint == list[int]:
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise ConfigError(f"{key}: must be two integers [width, height], got {value!r}")
        for v in value:
            _range(key, v, meta)
        return value
    else:  # pragma: no cover - a field type this checker does not know
        raise ConfigError(f"{key}: unsupported field type {hint}")
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{key}: must be one of {', '.join(repr(c) for c in meta['choices'])}, got {value!r}")
    _range(key, value, meta)
    return value


def _range(key: str, value: Any, meta: Any) -> None:
    if meta.get("gt") is not None and not value > meta["gt"]:
        raise ConfigError(f"{key}: must be > {meta['gt']:g}, got {value!r}")
    if meta.get("ge") is not None and not value >= meta["ge"]:
        raise ConfigError(f"{key}: must be >= {meta['ge']:g}, got {value!r}")
    if meta.get("le") is not None and not value <= meta["le"]:
        raise ConfigError(f"{key}: must be <= {meta['le']:g}, got {value!r}")


def _check_cross(config: KioskConfig) -> None:
    """What no single key can check: the operator keys."""
    from demos.hotkeys import parse_hotkey

    seen: dict[Any, str] = {}
    for name, combo in config.operator_bindings.items():
        try:
            hotkey = parse_hotkey(combo)
        except ValueError as e:
            raise ConfigError(f"operator.{name}: {e}") from None
        if hotkey in seen:
            raise ConfigError(f"operator.{name}: {combo!r} is already operator.{seen[hotkey]}")
        seen[hotkey] = name


def _tname(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)
