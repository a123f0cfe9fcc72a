"""Lazy pygame import: the CLI's ``--help`` must not pay for (or print) pygame.

pygame prints a "Hello from the pygame community" banner on import unless
``PYGAME_HIDE_SUPPORT_PROMPT`` is set first; every demo module goes through
:func:`import_pygame` so the banner never appears and a missing install says
what to do.
"""

from __future__ import annotations

import os


def import_pygame():
    """Return the ``pygame`` module, importing it quietly on first use."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError as e:  # pragma: no cover - depends on the install
        raise SystemExit(
            "the play window needs pygame (pip install 'pygame>=2.5', or run `make play` "
            f"which sets up the venv): {e}"
        ) from e
    return pygame
