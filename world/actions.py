"""The action vocabularies the world model is trained on, one per game.

They are part of the model's contract (the action embedding is indexed by them),
so they live here; `envs.teacher`, `envs.crafter` and every front end import them
from this module. A checkpoint says which game it learned in `game.env`.
"""

ACTION_MEANINGS = ("NOOP", "UP", "DOWN", "LEFT", "RIGHT", "USE")
NOOP, UP, DOWN, LEFT, RIGHT, USE = range(len(ACTION_MEANINGS))
MOVES = (UP, DOWN, LEFT, RIGHT)  # the actions that walk; a walk into an obstacle leaves the view in place

# Crafter's 17 actions in its own order; its moves and `do` carry the project's names (envs.crafter).
CRAFTER_ACTIONS = ("NOOP", "LEFT", "RIGHT", "UP", "DOWN", "USE", "SLEEP", "PLACE_STONE", "PLACE_TABLE",
                   "PLACE_FURNACE", "PLACE_PLANT", "MAKE_WOOD_PICKAXE", "MAKE_STONE_PICKAXE",
                   "MAKE_IRON_PICKAXE", "MAKE_WOOD_SWORD", "MAKE_STONE_SWORD", "MAKE_IRON_SWORD")

GAME_ACTIONS = {"teacher": ACTION_MEANINGS, "crafter": CRAFTER_ACTIONS}


def game_actions(game: str) -> tuple[str, ...]:
    """The action names of `game` ("teacher" or "crafter"), or a clear error."""
    if game not in GAME_ACTIONS:
        raise ValueError(f"unknown game {game!r}; valid: {', '.join(GAME_ACTIONS)}")
    return GAME_ACTIONS[game]


def move_neighbours(game: str, slots: int) -> list[int]:
    """Per action slot of a model of `game` (`dit.num_actions`, which may exceed the game's actions),
    the 3x3 neighbour (row-major, 4 = in place) each token of the next frame copies when the camera
    makes the move the action asks for: UP -> 1 (the tile above), DOWN -> 7, LEFT -> 3, RIGHT -> 5,
    every other action and unnamed slot 4."""
    step = {"UP": 1, "DOWN": 7, "LEFT": 3, "RIGHT": 5}
    names = game_actions(game)
    return [step.get(names[a], 4) if a < len(names) else 4 for a in range(slots)]
