"""The play window's key map and its input layer.

Input is read once per displayed frame, through an object with one method,
``poll() -> (events, held)``: ``events`` are the pygame events since the last
frame (key presses, typed text), ``held`` answers ``held[key] -> bool`` for the
keys down now. :class:`PygameInput` reads the real keyboard; :class:`ScriptedInput`
replays a fixed script (headless runs, tests) through the very same UI code.

Movement is *held*: a movement key down now moves the player this frame, so a
held key repeats. How fast depends on the world's motion (``envs.teacher``):
in a smooth world (2 px a frame) a held key moves every frame; in a tile-step
world (one whole tile a move) every frame would be 20 tiles a second, too fast
to steer, so a held key repeats ``move_rate`` times a second (:class:`Pacer`,
8 by default) with NOOP frames between, in which the world (its weather, its
water) still animates at the frame rate. A fresh press moves at once, even if
the key is already up again by the next frame (a tap is one tile). With several
movement keys down, the one pressed most recently wins; keys already down when
the window got focus (their press was never seen) rank UP > DOWN > LEFT > RIGHT.
USE fires once per press of space and wins over movement in the frame it is pressed.

Keys name actions, not numbers: the window maps them through its source's
``action_meanings`` (the teacher's six, or Crafter's 17 for a Crafter checkpoint,
whose extra actions have keys of their own, :data:`ACTION_KEYS`, each firing once
per press like USE).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from demos._pygame import import_pygame
from world.actions import ACTION_MEANINGS

# (keys, what they do) — the F1 overlay and the README both show this table.
KEY_HELP: tuple[tuple[str, str], ...] = (
    ("Arrows / WASD", "move (hold to keep moving; tile-step worlds: --move-rate steps/s, default 8)"),
    ("Space", "use: chop / place in front (Crafter: do, collect / attack)"),
    ("Tab, Z X F P, 1-6", "Crafter only: sleep; place stone, table, furnace, plant; make wood / stone / iron "
                          "pickaxe (1-3), sword (4-6)"),
    ("T", "type a new prompt (Enter apply, Esc cancel)"),
    ("F1", "this help"),
    ("F2", "HUD: fps, latency, denoising steps, frame, memory policy, budget misses"),
    ("F5 / F9", "save / load the world (world model)"),
    ("Backspace", "rewind a few seconds (world model)"),
    ("F12", "screenshot PNG"),
    ("R", "start / stop recording mp4 + action log"),
    ("Esc", "close the help or prompt box, else quit"),
)

# Movement actions in fallback priority order, each with its two keys.
_MOVE_KEY_NAMES = (("UP", ("K_UP", "K_w")), ("DOWN", ("K_DOWN", "K_s")), ("LEFT", ("K_LEFT", "K_a")),
                   ("RIGHT", ("K_RIGHT", "K_d")))
# One-press actions beyond USE (Space): Crafter's, on its own keys where the window's R (record)
# and T (prompt) do not take them (Crafter's GUI has stone on R and table on T).
ACTION_KEYS = {"SLEEP": "K_TAB", "PLACE_STONE": "K_z", "PLACE_TABLE": "K_x", "PLACE_FURNACE": "K_f",
               "PLACE_PLANT": "K_p", "MAKE_WOOD_PICKAXE": "K_1", "MAKE_STONE_PICKAXE": "K_2",
               "MAKE_IRON_PICKAXE": "K_3", "MAKE_WOOD_SWORD": "K_4", "MAKE_STONE_SWORD": "K_5",
               "MAKE_IRON_SWORD": "K_6"}


def key_code(name: str) -> int:
    """The pygame key code for a constant name such as ``"K_UP"`` or ``"K_t"``."""
    return getattr(import_pygame(), name)


def move_keys(meanings=ACTION_MEANINGS) -> dict[int, int]:
    """pygame key code -> movement action (its index in ``meanings``)."""
    return {key_code(name): list(meanings).index(move) for move, names in _MOVE_KEY_NAMES for name in names}


def action_keys(meanings=ACTION_MEANINGS) -> dict[int, int]:
    """pygame key code -> one-press action (USE on Space, and :data:`ACTION_KEYS` the game has)."""
    meanings = list(meanings)
    keys = {"USE": "K_SPACE", **ACTION_KEYS}
    return {key_code(keys[m]): i for i, m in enumerate(meanings) if m in keys}


DEFAULT_MOVE_RATE = 8.0  # tile-step worlds: moves a second while a key is held (~a player's pace)


class Pacer:
    """``rate`` moves a second at ``fps`` frames a second: which frames are move slots.

    Slots are the frames where ``floor(k * rate / fps)`` steps up (``k``: frames since
    :meth:`restart`), so the first frame is always one and they are evenly spread:
    8/s at 20 fps moves on frames 0, 3, 5, 8, 10, ... (8 in every 20). ``rate=None``
    (or one of at least ``fps``) makes every frame a slot.
    """

    def __init__(self, rate: float | None, fps: float):
        if rate is not None and not rate > 0:
            raise ValueError(f"move rate must be > 0 moves a second, got {rate}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.per_frame = None if rate is None or rate >= fps else rate / fps  # moves per frame, < 1
        self.restart()

    def restart(self) -> None:
        """The next frame is a slot, and the cadence counts from it."""
        self._k, self._next = 0, 0  # frames since restart; index of the next slot to fill

    def due(self) -> bool:
        """Is this frame a move slot? Call it exactly once a frame."""
        if self.per_frame is None:
            return True
        slot = math.floor(self._k * self.per_frame + 1e-9)  # the epsilon keeps 5 * 0.4 at 2
        self._k += 1
        if slot < self._next:
            return False
        self._next = slot + 1
        return True


class Movement:
    """Turns held keys into one movement action per frame (most recent press wins).

    ``pacer`` None: a held key moves every frame (smooth worlds). With a :class:`Pacer`
    (tile-step worlds) a held key moves on its slots and is NOOP between them; a
    fresh press restarts the cadence, so it moves on the frame it is seen, and a
    press released before the frame is read still moves once.
    """

    def __init__(self, pacer: Pacer | None = None, meanings=ACTION_MEANINGS) -> None:
        self.keys = move_keys(meanings)
        self.noop = list(meanings).index("NOOP")
        self.pacer = pacer
        self._order: list[int] = []  # key codes of movement keys, oldest press first
        self._pressed: int | None = None  # the movement action of a press seen since the last frame
        self._holding = False  # a movement key was down last frame

    def observe(self, event: Any) -> None:
        """Track press order (and fresh presses) from KEYDOWN/KEYUP events."""
        pygame = import_pygame()
        key = getattr(event, "key", None)
        if key not in self.keys:
            return
        if key in self._order:
            self._order.remove(key)
        if event.type == pygame.KEYDOWN:
            self._order.append(key)
            self._pressed = self.keys[key]

    def direction(self, held: Any) -> int:
        """The movement key that counts now (NOOP: none down), unpaced; no state advances."""
        self._order = [k for k in self._order if held[k]]
        if self._order:
            return self.keys[self._order[-1]]
        for key, action in self.keys.items():  # dict order = fallback priority
            if held[key]:
                return action
        return self.noop

    def action(self, held: Any) -> int:
        """This frame's movement action (NOOP: no key down, or between paced moves); once a frame."""
        move = self.direction(held)
        pressed, self._pressed = self._pressed, None
        if self.pacer is None:
            return move
        if move == self.noop and pressed is not None:
            move = pressed  # a tap: down and up again between two frames
        if move == self.noop:
            self._holding = False
            return self.noop
        if pressed is not None or not self._holding:
            self.pacer.restart()  # a new press (or a key found down) moves now
        self._holding = True
        return move if self.pacer.due() else self.noop


class HeldKeys:
    """``held[key]`` for a fixed set of key codes (the scripted counterpart of get_pressed)."""

    def __init__(self, keys: Iterable[int] = ()):
        self.keys = frozenset(keys)

    def __getitem__(self, key: int) -> bool:
        return key in self.keys


class PygameInput:
    """The real keyboard: the event queue plus ``pygame.key.get_pressed()``."""

    def poll(self) -> tuple[list[Any], Any]:
        pygame = import_pygame()
        return pygame.event.get(), pygame.key.get_pressed()


class ScriptedInput:
    """Replays a script: one ``(held key names, events)`` pair per frame, then nothing."""

    def __init__(self, frames: Iterable[tuple[Iterable[str], list[Any]]]):
        self._frames: Iterator[tuple[Iterable[str], list[Any]]] = iter(frames)
        self.done = False

    def poll(self) -> tuple[list[Any], Any]:
        try:
            names, events = next(self._frames)
        except StopIteration:
            self.done = True
            names, events = (), []
        return list(events), HeldKeys(key_code(n) for n in names)


def key_event(name: str, down: bool = True, text: str = "") -> Any:
    """A synthetic KEYDOWN/KEYUP event for the key constant ``name`` (e.g. ``"K_F12"``)."""
    pygame = import_pygame()
    kind = pygame.KEYDOWN if down else pygame.KEYUP
    return pygame.event.Event(kind, key=key_code(name), mod=0, unicode=text, scancode=0)


def text_event(text: str) -> Any:
    """A synthetic TEXTINPUT event (what typing produces while the prompt box is open)."""
    pygame = import_pygame()
    return pygame.event.Event(pygame.TEXTINPUT, text=text)


def type_prompt(text: str) -> list[list[Any]]:
    """Events, frame by frame, that open the prompt box, type ``text`` and press Enter."""
    return [[key_event("K_t", text="t"), text_event("t")], [text_event(text)], [key_event("K_RETURN")]]


HEADLESS_PROMPT = "a snowy forest at night"


def headless_script(frames: int, prompt: str = HEADLESS_PROMPT) -> Iterator[tuple[tuple[str, ...], list[Any]]]:
    """A deterministic walk for ``--headless``: square loops with USE, HUD on,
    the help overlay shown once, and one live prompt change half-way."""
    walk = [(key,) for key in ("K_RIGHT", "K_DOWN", "K_LEFT", "K_UP") for _ in range(12)]
    prompt_at = frames // 2
    typing = type_prompt(prompt)
    for i in range(frames):
        events: list[Any] = []
        if i == 0:
            events.append(key_event("K_F2"))  # HUD on, so the HUD path is exercised
        if i in (5, 15):
            events.append(key_event("K_F1"))  # help overlay on, then off
        if i % 24 == 23:
            events.append(key_event("K_SPACE"))  # USE at every other corner
        if prompt_at <= i < prompt_at + len(typing):
            events.extend(typing[i - prompt_at])
            yield (), events  # no movement while typing
            continue
        yield walk[i % len(walk)], events

