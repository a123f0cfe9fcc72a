"""The action vocabulary the world model is trained on: the teacher game's six actions.

It is part of the model's contract (the action embedding is indexed by it), so
it lives here; `envs.teacher` and every front end import it from this module.
"""

ACTION_MEANINGS = ("NOOP", "UP", "DOWN", "LEFT", "RIGHT", "USE")
NOOP, UP, DOWN, LEFT, RIGHT, USE = range(len(ACTION_MEANINGS))
MOVES = (UP, DOWN, LEFT, RIGHT)  # the actions that walk; a walk into an obstacle leaves the view in place
