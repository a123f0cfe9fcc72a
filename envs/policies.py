"""Action policies for recording episodes from any Discrete-action env.

- `random`: uniform actions.
- `explore`: a sticky random walk (moves held for several frames, occasional
  USE/NOOP); on envs without move actions, sticky random actions.
- `revisit`: excursions that leave a place and come back to the exact same
  position 20-200 frames later (out-and-back along the same path, or a square
  loop), because the world model only learns (and can only be measured on)
  long-range memory if the data returns to places it has seen.
On the teacher, `explore` and `revisit` steer around hazards (HazardGuard)
except for a small slip chance, so episodes last but still sometimes end.
In the teacher's tile-step mode (one move = one tile) they count in tiles,
not frames: holds and excursions are 4x shorter, a quarter of the frames are
NOOPs (a player at 20 fps moves ~8-10 tiles a second), and most moves into a
wall are turned away (a few are kept, so blocked moves stay in the data).

Every policy is seeded by a `np.random.Generator` and draws nothing else, so a
recording is reproducible from its seed. Interface::

    policy = make_policy("revisit", env, rng)
    obs, info = env.reset(seed=...)
    policy.reset(info)
    action = policy.act(info)          # once per frame, after reset/step
    policy.revisits                    # [(leave_frame, return_frame), ...]

`StyleSwitcher` is separate from the action policies: it changes the teacher
world's style mid-episode (through `set_style`) so recordings contain prompt
switches, and remembers when it did so the episode can be replayed exactly.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

MOVES = ("UP", "DOWN", "LEFT", "RIGHT")
INVERSE = {"UP": "DOWN", "DOWN": "UP", "LEFT": "RIGHT", "RIGHT": "LEFT"}
# World-direction guesses (x right, y down); replaced by what the env shows.
DEFAULT_DIRECTIONS = {"UP": (0, -1), "DOWN": (0, 1), "LEFT": (-1, 0), "RIGHT": (1, 0)}


def action_meanings(env) -> tuple[str, ...] | None:
    """The env's action names (`get_action_meanings()`, as ALE and the teacher have), else None."""
    get = getattr(env.unwrapped, "get_action_meanings", None)
    if get is None:
        return None
    return tuple(str(m).upper() for m in get())


def _describe_actions(env) -> str:
    meanings = action_meanings(env)
    return f"{env.action_space} without names" if meanings is None else ", ".join(meanings)


def _num_actions(env) -> int:
    space = env.action_space
    n = getattr(space, "n", None)
    if n is None or not hasattr(space, "start"):
        raise ValueError(f"policies need a Discrete action space, got {space}")
    return int(n)


def _move_actions(env) -> dict[str, int] | None:
    """{"UP": a, "DOWN": a, "LEFT": a, "RIGHT": a} if the env has all four moves, else None."""
    meanings = action_meanings(env)
    if meanings is None or not all(m in meanings for m in MOVES):
        return None
    start = int(env.action_space.start)
    return {m: start + meanings.index(m) for m in MOVES}


def tile_steps(env) -> bool:
    """Does one move go a whole tile (the teacher's tile-step mode)?"""
    return getattr(env.unwrapped, "motion", None) == "tile"


def _position(info: dict) -> tuple[int, int] | None:
    pos = info.get("position") if info else None
    return None if pos is None else (int(pos[0]), int(pos[1]))


class HazardGuard:
    """Steers around the teacher's hazards most of the time (episode ends stay in the data).

    It asks the env's `leads_to_hazard(action)` (the teacher has it); for any
    other env it does nothing. `slip_prob` is the chance of walking in anyway.
    With `wall_avoid` > 0 it also turns away from moves the env's `blocks(action)`
    says a wall stops, with that probability.
    """

    def __init__(self, env, rng: np.random.Generator, slip_prob: float, wall_avoid: float = 0.0):
        self.rng, self.slip_prob, self.wall_avoid = rng, slip_prob, wall_avoid
        self.query = getattr(env.unwrapped, "leads_to_hazard", None)
        self.walls = getattr(env.unwrapped, "blocks", None) if wall_avoid > 0 else None
        self.meanings = action_meanings(env)

    def deadly(self, info: dict, move: str) -> bool:
        """Would `move` from here step onto a hazard or, if avoided, into a wall (and may we not slip)?"""
        if self.query is None or self.meanings is None or move not in self.meanings:
            return False
        action = self.meanings.index(move)
        if self.walls is not None and self.walls(action):
            return self.rng.random() < self.wall_avoid
        if not self.query(action):
            return False
        return self.rng.random() >= self.slip_prob

    def safe(self, info: dict, move: str, moves=MOVES) -> str:
        """`move` if it is safe, else a random safe one of `moves` (or `move` if none is)."""
        if not self.deadly(info, move):
            return move
        options = [m for m in moves if m != move and not self.deadly(info, m)]
        return options[int(self.rng.integers(len(options)))] if options else move


class Policy:
    """Base class: `reset(info)` at episode start, then `act(info) -> int` once per frame."""

    name = "policy"

    def __init__(self, env, rng: np.random.Generator):
        self.n = _num_actions(env)
        self.start = int(env.action_space.start)
        self.rng = rng
        self.frame = 0                                   # index of the frame being acted on
        self.revisits: list[tuple[int, int]] = []        # (leave_frame, return_frame)

    def reset(self, info: dict) -> None:
        self.frame = 0
        self.revisits = []

    def act(self, info: dict) -> int:
        action = self._act(info)
        self.frame += 1
        return int(action)

    def _act(self, info: dict) -> int:
        raise NotImplementedError


class RandomPolicy(Policy):
    """Uniform random actions, independent per frame."""

    name = "random"

    def _act(self, info):
        return self.start + int(self.rng.integers(self.n))


class ExplorePolicy(Policy):
    """Sticky random walk.

    With move actions (the teacher, Crafter): hold one move for a geometric number
    of frames (mean `mean_hold`), with an occasional USE or NOOP frame, and on envs
    with more actions (Crafter's sleep / place / make) one of those uniformly with
    probability `other_prob`, turning away from hazards except with probability
    `slip_prob` (see HazardGuard). An env may set its own defaults for these in
    `explore_defaults` (Crafter uses USE more: trees and stone need it).
    Other envs: repeat the previous action with probability `repeat_prob`.
    """

    name = "explore"

    def __init__(self, env, rng, mean_hold: float | None = None, use_prob: float | None = None,
                 noop_prob: float | None = None, repeat_prob: float = 0.75, slip_prob: float = 0.01,
                 other_prob: float | None = None):
        super().__init__(env, rng)
        tile = tile_steps(env)
        defaults = getattr(env.unwrapped, "explore_defaults", {})
        use_prob = defaults.get("use_prob", 0.03) if use_prob is None else use_prob
        other_prob = defaults.get("other_prob", 0.05) if other_prob is None else other_prob
        mean_hold = (3.0 if tile else 12.0) if mean_hold is None else mean_hold
        noop_prob = (0.25 if tile else 0.02) if noop_prob is None else noop_prob
        self.moves = _move_actions(env)
        meanings = action_meanings(env) or ()
        self.use = self.start + meanings.index("USE") if "USE" in meanings else None
        self.noop = self.start + meanings.index("NOOP") if "NOOP" in meanings else None
        named = set(MOVES) | {"USE", "NOOP"}
        self.others = [self.start + i for i, m in enumerate(meanings) if m not in named]
        self.mean_hold, self.use_prob, self.noop_prob, self.other_prob = mean_hold, use_prob, noop_prob, other_prob
        self.repeat_prob = repeat_prob
        self.guard = HazardGuard(env, rng, slip_prob, wall_avoid=0.85 if tile else 0.0)
        self.current: int | None = None
        self.hold = 0

    def reset(self, info):
        super().reset(info)
        self.current, self.hold = None, 0

    def _act(self, info):
        if self.moves is None:                            # generic env: sticky uniform
            if self.current is None or self.rng.random() >= self.repeat_prob:
                self.current = self.start + int(self.rng.integers(self.n))
            return self.current
        u = self.rng.random()
        if self.use is not None and u < self.use_prob:
            return self.use
        if self.noop is not None and u < self.use_prob + self.noop_prob:
            return self.noop
        if self.others and u < self.use_prob + self.noop_prob + self.other_prob:
            return self.others[int(self.rng.integers(len(self.others)))]
        if self.hold <= 0:
            self.current = list(self.moves.values())[int(self.rng.integers(4))]
            self.hold = int(self.rng.geometric(1.0 / self.mean_hold))
        self.hold -= 1
        move = MOVES[list(self.moves.values()).index(self.current)]
        safe = self.guard.safe(info, move)
        if safe != move:                                  # turn away and keep the new heading
            self.current, self.hold = self.moves[safe], int(self.rng.geometric(1.0 / self.mean_hold))
        return self.current


class RevisitPolicy(Policy):
    """Excursions that leave a place and return to it 20-200 frames later.

    Cycle: travel (a sticky walk of 0-`max_travel` frames, so the world keeps
    changing) -> excursion from the start point S, one of
      * out-and-back: a sticky walk of L in [10, 100] moves, then retrace it;
      * loop: a square of side s in [10, 50] moves (3 sides out, the 4th back).
    With `info["position"]` the way back is steered by positions (a blocked
    move is not on the trail, so it is not "undone"), and a revisit is logged
    in `revisits` only when the player went >= MIN_AWAY pixels from S and is
    back on S exactly. A move into a wall turns the outbound walk. Without positions
    the way back is the inverse moves, and the return is assumed.
    """

    name = "revisit"
    MIN_GAP, MAX_GAP = 20, 200      # frames between leaving a place and being back on it
    MIN_AWAY = 16                   # pixels (2 teacher tiles) it must have gone to count as a revisit

    def __init__(self, env, rng, max_travel: int | None = None, loop_prob: float = 0.4,
                 mean_hold: float | None = None, slip_prob: float = 0.01):
        super().__init__(env, rng)
        self.unit = 4 if tile_steps(env) else 1  # a tile step covers 4 smooth moves: plans shrink 4x
        max_travel = 60 // self.unit if max_travel is None else max_travel
        mean_hold = 8.0 / self.unit if mean_hold is None else mean_hold
        moves = _move_actions(env)
        if moves is None:
            raise ValueError(
                f"the revisit policy needs move actions {'/'.join(MOVES)} to find its way back; "
                f"this env's actions are {_describe_actions(env)} (use the explore or random policy)")
        self.moves = moves
        self.action_to_move = {a: m for m, a in moves.items()}
        self.explore = ExplorePolicy(env, rng, mean_hold=mean_hold if self.unit == 1 else None, slip_prob=slip_prob)
        self.max_travel, self.loop_prob, self.mean_hold = max_travel, loop_prob, mean_hold
        self.reset({})

    # --- state machine ---------------------------------------------------
    def reset(self, info):
        super().reset(info)
        self.explore.reset(info)
        self.directions = dict(DEFAULT_DIRECTIONS)
        self.step_size: int | None = None        # pixels per move, learnt from positions
        self.last_pos, self.last_move = _position(info), None
        self._begin_travel()

    def _begin_travel(self):
        self.phase = "travel"
        self.todo = int(self.rng.integers(0, self.max_travel + 1))

    def _begin_excursion(self, pos):
        self.phase = "out"
        self.leave_frame, self.home, self.away = self.frame, pos, 0
        self.trail = [pos] if pos is not None else []   # positions to retrace, oldest first
        self.undo: list[str] = []                        # inverse moves, for position-less envs
        if self.rng.random() < self.loop_prob:           # square: 3 sides out, the 4th closes it
            side = int(self.rng.integers(10 // self.unit, 50 // self.unit + 1))
            first = MOVES[int(self.rng.integers(4))]
            turn = [m for m in MOVES if m not in (first, INVERSE[first])][int(self.rng.integers(2))]
            self.plan = [first] * side + [turn] * side + [INVERSE[first]] * side
            self.back_plan = [INVERSE[turn]] * side
            self.mode = "direct"
        else:                                            # sticky walk out, retrace back
            length, plan, move = int(self.rng.integers(10 // self.unit, 100 // self.unit + 1)), [], None
            while len(plan) < length:
                options = [m for m in MOVES if move is None or m != INVERSE[move]]
                move = options[int(self.rng.integers(len(options)))]
                plan += [move] * int(self.rng.geometric(1.0 / self.mean_hold))
            self.plan, self.back_plan, self.mode = plan[:length], None, "retrace"
        self.plan.reverse()                              # pop() from the end

    def _observe(self, info):
        """Learn move directions/size from the last step; extend the outbound trail."""
        pos = _position(info)
        self.out_blocked = False
        if pos is not None and self.last_pos is not None and self.last_move is not None:
            dx, dy = pos[0] - self.last_pos[0], pos[1] - self.last_pos[1]
            self.out_blocked = (dx, dy) == (0, 0) and self.phase == "out"
            if self.phase in ("out", "back"):
                self.away = max(self.away, abs(pos[0] - self.home[0]), abs(pos[1] - self.home[1]))
            if (dx, dy) != (0, 0):
                self.directions[self.last_move] = (int(np.sign(dx)), int(np.sign(dy)))
                size = max(abs(dx), abs(dy))
                self.step_size = size if self.step_size is None else max(self.step_size, size)
                if self.phase == "out":
                    self.trail.append(pos)
        elif pos is None and self.phase == "out" and self.last_move is not None:
            self.undo.append(INVERSE[self.last_move])
        self.last_pos = pos
        return pos

    def _toward(self, pos, target) -> str:
        """The move that brings `pos` closest to `target` (along the larger gap)."""
        d = (target[0] - pos[0], target[1] - pos[1])
        return max(MOVES, key=lambda m: self.directions[m][0] * d[0] + self.directions[m][1] * d[1])

    def _back_move(self, pos) -> str | None:
        """Next move home; None when home, or as close as moves of this size can get."""
        if pos is None:                                  # blind: inverse moves / closing side
            plan = self.back_plan if self.back_plan is not None else self.undo
            return plan.pop() if plan else None
        tol = (self.step_size or 1) - 1                  # a partial (blocked) move can't be hit exactly
        near = lambda p: max(abs(p[0] - pos[0]), abs(p[1] - pos[1])) <= tol
        target = self.home
        if self.mode == "retrace":
            while len(self.trail) > 1 and near(self.trail[-1]):
                self.trail.pop()
            target = self.trail[-1]
        if target == self.home and (pos == self.home or near(self.home)):
            return None
        return self._toward(pos, target)

    def _act(self, info):
        pos = self._observe(info)
        while True:                                      # a phase may end and the next begin this frame
            if self.phase == "travel":
                if self.todo > 0:
                    self.todo -= 1
                    action = self.explore.act(info)
                    self.last_move = self.action_to_move.get(action)
                    return action
                self._begin_excursion(pos)
            if self.phase == "out":
                if self.plan:
                    planned = move = self.plan.pop()
                    if self.out_blocked and planned == self.last_move:  # walking into a wall: turn
                        move = [m for m in MOVES if m != planned][int(self.rng.integers(3))]
                    move = self.explore.guard.safe(info, move)
                    k = len(self.plan)
                    while move != planned and k > 0 and self.plan[k - 1] == planned:
                        k -= 1
                        self.plan[k] = move              # the rest of this run turns away too
                    break
                self.phase, self.back_prev = "back", None
            blocked = pos is not None and pos == self.back_prev   # last move home went nowhere
            if blocked and self.mode == "direct":        # loop's closing side is blocked: retrace
                self.mode, self.back_prev, blocked = "retrace", None, False
            move = self._back_move(pos)
            if move is not None:                         # off the trail (loops, detours): mind hazards
                move = self.explore.guard.safe(info, move)
            elapsed = self.frame - self.leave_frame
            if move is not None and elapsed < self.MAX_GAP and not blocked:
                self.back_prev = pos
                break
            home = pos is None or (pos == self.home and self.away >= self.MIN_AWAY)
            if move is None and home and elapsed >= self.MIN_GAP:
                self.revisits.append((self.leave_frame, self.frame))
            self._begin_travel()
        self.last_move = move
        return self.moves[move]


POLICIES: dict[str, type[Policy]] = {
    "random": RandomPolicy,
    "explore": ExplorePolicy,
    "revisit": RevisitPolicy,
}


def make_policy(name: str, env, rng: np.random.Generator, **kwargs) -> Policy:
    """Build policy `name` (one of POLICIES) for `env`, drawing only from `rng`."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; valid policies: {', '.join(POLICIES)}")
    return POLICIES[name](env, rng, **kwargs)


class StyleSwitcher:
    """Switches the teacher world's style mid-episode with probability `prob` per frame.

    `maybe_switch(frame)` is called before each step; each switch is logged in
    `events` as {"frame": f, "style": dict} (the style takes effect on the
    step out of frame f), so `replay_style_events` can re-apply them exactly.
    """

    def __init__(self, env, rng: np.random.Generator, prob: float,
                 sample: Callable[[np.random.Generator], Any] | None = None):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"style switch probability must be in [0, 1], got {prob}")
        if prob > 0 and not hasattr(env.unwrapped, "set_style"):
            raise ValueError("style switches need an env with set_style() (the teacher world)")
        self.env, self.rng, self.prob = env, rng, prob
        self.sample = sample
        self.events: list[dict] = []

    def reset(self) -> None:
        self.events = []

    def maybe_switch(self, frame: int) -> dict | None:
        if self.prob == 0.0 or self.rng.random() >= self.prob:
            return None
        if self.sample is None:
            from envs.style import sample_style  # the teacher's style space
            self.sample = sample_style
        style = self.sample(self.rng)
        style = style.to_dict() if hasattr(style, "to_dict") else dict(style)
        self.env.unwrapped.set_style(style)
        event = {"frame": int(frame), "style": style}
        self.events.append(event)
        return event


def replay_style_events(env, events: list[dict], frame: int) -> None:
    """Apply the recorded style switches made at `frame` (call before stepping out of it)."""
    for event in events:
        if event["frame"] == frame:
            env.unwrapped.set_style(event["style"])
