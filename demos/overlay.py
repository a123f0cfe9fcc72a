"""Everything the play window draws on top of the game picture.

HUD (top-left), help (centre), prompt box (bottom), short notices ("toasts",
above the prompt box), the big end-of-episode banner, the names of the two
pictures in compare mode, and the kiosk's "press any key" card. All panels are
translucent dark boxes with pygame's bundled default font, sized from the
window height so the text stays legible at any ``--scale``.
"""

from __future__ import annotations

from collections.abc import Sequence

from demos._pygame import import_pygame

TEXT = (240, 240, 240)
DIM = (170, 176, 186)
ACCENT = (255, 210, 90)
WARN = (255, 120, 100)
PANEL = (12, 14, 20, 190)  # RGBA: translucent so the world stays visible behind


class Overlay:
    """Fonts and drawing for one window size."""

    def __init__(self, size: tuple[int, int]):
        pygame = import_pygame()
        pygame.font.init()
        self.w, self.h = size
        px = max(13, self.h // 30)  # 17 px text in a 512 px window
        self.font = pygame.font.Font(None, int(px * 1.25))  # the default font runs small
        self.big = pygame.font.Font(None, int(px * 2.4))
        self.line = self.font.get_linesize()
        self.pad = max(4, px // 3)

    # -- primitives -------------------------------------------------------------------
    def wrap(self, text: str, width: int) -> list[str]:
        """Greedy word wrap of ``text`` to ``width`` pixels."""
        lines: list[str] = []
        for paragraph in text.split("\n"):
            line = ""
            for word in paragraph.split(" "):
                trial = f"{line} {word}" if line else word
                if self.font.size(trial)[0] <= width or not line:
                    line = trial
                else:
                    lines.append(line)
                    line = word
            lines.append(line)
        return lines

    def panel(self, surface, rect) -> None:
        pygame = import_pygame()
        box = pygame.Surface(rect.size, pygame.SRCALPHA)
        box.fill(PANEL)
        surface.blit(box, rect.topleft)

    def text(self, surface, text: str, pos: tuple[int, int], color=TEXT, font=None) -> None:
        surface.blit((font or self.font).render(text, True, color), pos)

    # -- widgets ----------------------------------------------------------------------
    def hud(self, surface, fields: Sequence[tuple[str, str]], caption: str) -> None:
        """Label/value lines top-left, then the caption wrapped across the top."""
        pygame = import_pygame()
        label_w = max(self.font.size(label)[0] for label, _ in fields) + 2 * self.pad
        value_w = max(self.font.size(value)[0] for _, value in fields)
        cap_lines = self.wrap(caption, self.w - 4 * self.pad) if caption else []
        width = max(label_w + value_w, *(self.font.size(c)[0] for c in cap_lines), 0) + 2 * self.pad
        height = (len(fields) + len(cap_lines)) * self.line + 2 * self.pad
        self.panel(surface, pygame.Rect(self.pad, self.pad, width, height))
        x, y = 2 * self.pad, 2 * self.pad
        for label, value in fields:
            self.text(surface, label, (x, y), DIM)
            self.text(surface, value, (x + label_w, y))
            y += self.line
        for c in cap_lines:
            self.text(surface, c, (x, y), ACCENT)
            y += self.line

    def help(self, surface, keys: Sequence[tuple[str, str]], title: str, footer: str) -> None:
        """The key table in a centred panel."""
        pygame = import_pygame()
        key_w = max(self.font.size(k)[0] for k, _ in keys) + 3 * self.pad
        rows = [(k, line) for k, what in keys for line in self.wrap(what, self.w - key_w - 8 * self.pad)]
        rows = [(k if i == 0 or rows[i - 1][0] != k else "", line) for i, (k, line) in enumerate(rows)]
        footer_lines = self.wrap(footer, self.w - 8 * self.pad)
        width = min(self.w - 2 * self.pad, key_w + max(self.font.size(r)[0] for _, r in rows) + 4 * self.pad)
        height = self.big.get_linesize() + (len(rows) + len(footer_lines) + 1) * self.line + 3 * self.pad
        rect = pygame.Rect(0, 0, width, height)
        rect.center = (self.w // 2, self.h // 2)
        self.panel(surface, rect)
        x, y = rect.x + 2 * self.pad, rect.y + 2 * self.pad
        self.text(surface, title, (x, y), ACCENT, self.big)
        y += self.big.get_linesize()
        for key, what in rows:
            self.text(surface, key, (x, y), ACCENT)
            self.text(surface, what, (x + key_w, y))
            y += self.line
        y += self.line
        for line in footer_lines:
            self.text(surface, line, (x, y), DIM)
            y += self.line

    def prompt_box(self, surface, typed: str, cursor: bool) -> int:
        """The text box at the bottom while a prompt is typed; returns its top y."""
        pygame = import_pygame()
        hint = "Enter: apply    Esc: cancel"
        lines = self.wrap("Prompt: " + typed + ("_" if cursor else " "), self.w - 4 * self.pad)
        height = (len(lines) + 1) * self.line + 2 * self.pad
        rect = pygame.Rect(self.pad, self.h - height - self.pad, self.w - 2 * self.pad, height)
        self.panel(surface, rect)
        y = rect.y + self.pad
        for line in lines:
            self.text(surface, line, (rect.x + self.pad, y))
            y += self.line
        self.text(surface, hint, (rect.x + self.pad, y), DIM)
        return rect.y

    def toasts(self, surface, messages: Sequence[tuple[str, bool]], bottom: int) -> None:
        """Short notices stacked upwards from ``bottom``; ``(text, is_warning)``."""
        pygame = import_pygame()
        y = bottom
        for text, warn in reversed(messages):
            lines = self.wrap(text, self.w - 6 * self.pad)
            width = max(self.font.size(line)[0] for line in lines) + 2 * self.pad
            height = len(lines) * self.line + self.pad
            y -= height + self.pad
            rect = pygame.Rect((self.w - width) // 2, y, width, height)
            self.panel(surface, rect)
            for i, line in enumerate(lines):
                lw = self.font.size(line)[0]
                self.text(surface, line, ((self.w - lw) // 2, y + self.pad // 2 + i * self.line), WARN if warn else TEXT)

    def banner(self, surface, text: str, sub: str) -> None:
        """A big message in the upper third (end of episode), clear of the player."""
        pygame = import_pygame()
        shade = pygame.Surface((self.w, self.h), pygame.SRCALPHA)
        shade.fill((90, 0, 0, 90))
        surface.blit(shade, (0, 0))
        font = self.big if self.big.size(text)[0] <= self.w - 6 * self.pad else self.font
        tw, th = font.size(text)
        sw = self.font.size(sub)[0]
        rect = pygame.Rect(0, 0, max(tw, sw) + 4 * self.pad, th + self.line + 3 * self.pad)
        rect.center = (self.w // 2, self.h // 4)
        self.panel(surface, rect)
        self.text(surface, text, ((self.w - tw) // 2, rect.y + self.pad), WARN, font)
        self.text(surface, sub, ((self.w - sw) // 2, rect.y + 2 * self.pad + th), TEXT)

    def labels(self, surface, names: Sequence[str]) -> None:
        """Name side-by-side pictures (compare mode): a tag in the bottom-left corner of each."""
        pygame = import_pygame()
        part = self.w // len(names)
        for i, name in enumerate(names):
            tw = self.font.size(name)[0]
            rect = pygame.Rect(i * part + self.pad, self.h - self.line - 2 * self.pad, tw + 2 * self.pad, self.line + self.pad)
            self.panel(surface, rect)
            self.text(surface, name, (rect.x + self.pad, rect.y + self.pad // 2), ACCENT)

    def card(self, surface, title: str, lines: Sequence[str], blink: bool) -> None:
        """A centred call to action in the lower third (the kiosk's attract mode)."""
        pygame = import_pygame()
        wrapped = [w for line in lines for w in self.wrap(line, self.w - 8 * self.pad)]
        tw = self.big.size(title)[0]
        width = min(self.w - 2 * self.pad, max([tw] + [self.font.size(w)[0] for w in wrapped]) + 4 * self.pad)
        height = self.big.get_linesize() + len(wrapped) * self.line + 3 * self.pad
        rect = pygame.Rect(0, 0, width, height)
        rect.center = (self.w // 2, self.h * 3 // 4)
        self.panel(surface, rect)
        if blink:
            self.text(surface, title, ((self.w - tw) // 2, rect.y + self.pad), ACCENT, self.big)
        y = rect.y + self.pad + self.big.get_linesize() + self.pad
        for line in wrapped:
            lw = self.font.size(line)[0]
            self.text(surface, line, ((self.w - lw) // 2, y), TEXT)
            y += self.line

    def corner(self, surface, text: str) -> None:
        """A short line in the top-right corner (the kiosk's countdown)."""
        pygame = import_pygame()
        tw = self.font.size(text)[0]
        rect = pygame.Rect(self.w - tw - 3 * self.pad, self.pad, tw + 2 * self.pad, self.line + self.pad)
        self.panel(surface, rect)
        self.text(surface, text, (rect.x + self.pad, rect.y + self.pad // 2), ACCENT)
