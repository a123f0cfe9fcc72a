"""Operator hotkeys: global through pynput, else inside the window.

A kiosk operator must reach the machine even when the game window has the
focus and visitors hold the keyboard: ``ctrl+alt+R`` reset, ``ctrl+alt+P`` next
prompt, ``ctrl+alt+Q`` quit (configurable). They are registered as global
hotkeys with ``pynput.keyboard.GlobalHotKeys`` (which also work when the
window is not focused). pynput is imported lazily, and where it cannot start
(not installed, no X display, no permission, an X server without the RECORD
extension) :meth:`OperatorHotkeys.start` returns the reason once and the same
combinations are matched on the window's own key events instead.

Hotkeys use pynput's notation, e.g. ``"<ctrl>+<alt>+r"``: modifiers in angle
brackets, then one key (a character or ``<f1>``..``<f12>``). pynput's callbacks
run on its listener thread; they only queue the command, which the window's
loop picks up with :meth:`OperatorHotkeys.poll` (one thread touches the world).
"""

from __future__ import annotations

import queue
import re
import threading
from dataclasses import dataclass
from typing import Any

MODIFIERS = ("ctrl", "alt", "shift", "cmd")
START_TIMEOUT_S = 2.0  # a listener not ready by then is taken as not working


@dataclass(frozen=True)
class Hotkey:
    """One combination: modifier names and a key (``"r"``, ``"f5"``)."""

    mods: frozenset[str]
    key: str

    def pynput(self) -> str:
        key = self.key if len(self.key) == 1 else f"<{self.key}>"
        return "+".join([f"<{m}>" for m in MODIFIERS if m in self.mods] + [key])

    def __str__(self) -> str:
        return "+".join([m for m in MODIFIERS if m in self.mods] + [self.key.upper()])


def parse_hotkey(text: str) -> Hotkey:
    """``"<ctrl>+<alt>+r"`` -> Hotkey; ValueError saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("must be a key combination such as '<ctrl>+<alt>+r'")
    *mods, key = [p.strip().lower() for p in text.split("+")]
    for m in mods:
        name = m.strip("<>")
        if not (m.startswith("<") and m.endswith(">")) or name not in MODIFIERS:
            raise ValueError(f"{text!r}: {m!r} is not a modifier (use {', '.join(f'<{x}>' for x in MODIFIERS)})")
    if len(key) != 1 and not re.fullmatch(r"<f([1-9]|1[0-2])>", key):
        raise ValueError(f"{text!r}: the key must be one character or <f1>..<f12>, got {key!r}")
    if not mods:
        raise ValueError(f"{text!r}: needs at least one modifier, so visitors cannot press it by chance")
    return Hotkey(frozenset(m.strip("<>") for m in mods), key.strip("<>"))


class OperatorHotkeys:
    """``bindings``: command -> combination, e.g. ``{"quit": "<ctrl>+<alt>+q"}``."""

    def __init__(self, bindings: dict[str, str], use_global: bool = True,
                 off_reason: str = "global hotkeys are off in the config"):
        self.bindings = {cmd: parse_hotkey(combo) for cmd, combo in bindings.items()}
        if len(set(self.bindings.values())) != len(self.bindings):
            raise ValueError("two operator commands share one key combination")
        self.use_global, self.off_reason = use_global, off_reason
        self.in_window = True  # until the global listener runs
        self._fired: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._listener: Any = None

    def start(self) -> str | None:
        """Start the global listener; None when it runs, else why not (the window takes over)."""
        if not self.use_global:
            return self.off_reason
        try:
            from pynput import keyboard  # lazy: it connects to the display on import
        except Exception as e:  # noqa: BLE001 - ImportError, or the X connection failing inside it
            return f"pynput cannot start: {_first_line(e)}"
        try:
            listener = keyboard.GlobalHotKeys(
                {hk.pynput(): (lambda cmd=cmd: self._fired.put(cmd)) for cmd, hk in self.bindings.items()})
            listener.daemon = True
            listener.start()
        except Exception as e:  # noqa: BLE001 - any failure means: use the window's keys
            return f"pynput listener failed: {_first_line(e)}"
        ready = threading.Event()
        threading.Thread(target=lambda: (listener.wait(), ready.set()), daemon=True).start()
        if not ready.wait(START_TIMEOUT_S) or not listener.is_alive():
            listener.stop()
            return "pynput listener did not start (no permission to read the keyboard, or no X RECORD extension?)"
        self._listener = listener
        self.in_window = False
        return None

    def poll(self) -> list[str]:
        """Commands fired by the global listener since the last poll."""
        fired = []
        while True:
            try:
                fired.append(self._fired.get_nowait())
            except queue.Empty:
                return fired

    def match(self, event: Any) -> str | None:
        """The command a pygame KEYDOWN event is (in-window fallback), else None."""
        from demos._pygame import import_pygame

        pygame = import_pygame()
        mods = getattr(event, "mod", 0)
        held = {"ctrl": bool(mods & pygame.KMOD_CTRL), "alt": bool(mods & pygame.KMOD_ALT),
                "shift": bool(mods & pygame.KMOD_SHIFT), "cmd": bool(mods & pygame.KMOD_GUI)}
        for cmd, hk in self.bindings.items():
            if all(held[m] == (m in hk.mods) for m in MODIFIERS) and event.key == _key_code(pygame, hk.key):
                return cmd
        return None

    def describe(self) -> str:
        return ", ".join(f"{hk} {cmd.replace('_', ' ')}" for cmd, hk in self.bindings.items())

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None


def _key_code(pygame: Any, key: str) -> int:
    """pygame's code for ``"r"`` or ``"f5"`` (K_r, K_F5), else SDL's lookup by name."""
    code = getattr(pygame, "K_" + (key.upper() if len(key) > 1 else key), None)
    return code if code is not None else pygame.key.key_code(key)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")
