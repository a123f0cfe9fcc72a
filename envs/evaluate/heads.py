"""Section 6, heads: can an agent trust the dream's reward and episode end?

World-v0 pays what the reward head says (`WorldModel.outcome`: its regressed value, or 1 where
a classifier head's pickup probability passes 0.5) and ends the episode when the done head's
probability passes 0.5 (`envs.world_env`). An agent trained there learns whatever those heads pay, so a
head that pays where the teacher would not is a reward to farm (issue 17). Here the teacher
plays each world with its explore policy, walking into a hazard with `heads_slip` chance where
it would step around one (so episodes end), and the model is run on the same actions twice:

- teacher-forced: the true frame committed at every step, the heads read it (what the heads
  learned, free of drift);
- free-running: the model's own frames, as an agent in World-v0 sees them.

A frame pays a reward when the reward head says > 0.5 (the teacher pays 1 per gem, else 0) and
ends when the done probability is > 0.5. An event matches when the teacher has one within
`MATCH_FRAMES` frames (a free run may draw the pickup a frame early or late). Per head and run:
precision (share of the model's events the teacher also has), recall (share of the teacher's
events the model also has) and the counts; for the reward also the share of the dream's whole
reward mass (the sum of its positive head values, what an agent collects) paid where the
teacher pays nothing within the match window (beyond that frame's own true reward):
`unearned_share`, the figure issue 17 bounds.

A free run drifts from the teacher's world, so a free-running event the teacher does not share
may still be one the dream drew: `shown_share` asks the dream itself, the share of its events
where its own frame showed a gem (reward) or a hazard (done) on the tile the action walked the
player onto (within `MATCH_FRAMES` steps; `content.stepped_onto`, tile-step worlds of the
teacher). An agent in World-v0 that is paid where it saw a gem learns to walk to gems; one paid
where it saw none learns the head. The same check on the teacher's own frames and events
(`teacher_shown`) is the check's own ceiling. And whether the dream has gems an agent can
reach: a scripted gem seeker in the teacher and in the dream (`seeker`, envs/evaluate/seeker.py).

On a Crafter checkpoint the game is Crafter itself under its explore policy (no slips: it has
no hazard guard to slip from; zombies, arrows and hunger end episodes), the reward events are
achievements (reward 1, so > 0.5; Crafter's +-0.1 for health are not events) and the ends are
deaths.
"""

from __future__ import annotations

import numpy as np

from .config import EVENT_THRESHOLD, EvalConfig, Game
from .content import stepped_onto
from .rollouts import model_rollout, teacher_forced, teacher_run
from .seeker import eval_seeker

MATCH_FRAMES = 1


def _near(events: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """bool [B, T] -> bool [B, T]: an event within MATCH_FRAMES frames of t (live frames only)."""
    out = events & alive
    for d in range(1, MATCH_FRAMES + 1):
        out[:, d:] |= events[:, :-d] & alive[:, :-d]
        out[:, :-d] |= events[:, d:] & alive[:, d:]
    return out


def event_scores(pred: np.ndarray, true: np.ndarray, alive: np.ndarray) -> dict:
    """pred, true bool [B, T] events, alive bool [B, T] -> precision, recall and the counts."""
    pred, true = pred & alive, true & alive
    hit_pred = pred & _near(true, alive)  # the model's events the teacher also has
    hit_true = true & _near(pred, alive)
    n_pred, n_true = int(pred.sum()), int(true.sum())
    return {"precision": None if n_pred == 0 else float(hit_pred.sum() / n_pred),
            "recall": None if n_true == 0 else float(hit_true.sum() / n_true),
            "model_events": n_pred, "teacher_events": n_true}


def head_scores(reward: np.ndarray, done: np.ndarray, true_reward: np.ndarray, true_end: np.ndarray,
                alive: np.ndarray) -> dict:
    """reward head values, done probabilities, teacher rewards, teacher ends, alive: [B, T] each."""
    paid = true_reward > EVENT_THRESHOLD
    mass = np.where(alive, np.clip(reward, 0, None), 0.0)
    # Away from a true event, what the head pays beyond the true reward of that frame (Crafter pays
    # +0.1 for health regained: a regressed head that pays it there has earned it).
    unearned = np.where(_near(paid, alive), 0.0, np.clip(mass - np.clip(true_reward, 0, None), 0, None))
    return {"reward": {**event_scores(reward > EVENT_THRESHOLD, paid, alive),
                       "reward_mass": float(mass.sum()), "teacher_reward": float(np.where(alive, true_reward, 0).sum()),
                       "unearned_share": None if mass.sum() == 0 else float(unearned.sum() / mass.sum())},
            "done": event_scores(done > EVENT_THRESHOLD, true_end, alive)}


def shown_share(events: np.ndarray, onto: np.ndarray, cls: int, alive: np.ndarray) -> float | None:
    """events bool [B, T], onto int [B, T] (`content.stepped_onto`) -> the share of the events
    with a step onto a tile of class `cls` within MATCH_FRAMES steps (None: no events)."""
    events = events & alive
    return None if not events.any() else float(events[_near(onto == cls, alive)].sum() / events.sum())


def eval_heads(model, ev: EvalConfig, text, seeds: list[int], steps, game: Game) -> dict:
    T = ev.heads_frames
    eps = [teacher_run(s, T, game, slip_prob=ev.heads_slip) for s in seeds]
    true = np.stack([e.frames for e in eps])  # [B, T + 1, R, R, 3]
    actions = np.stack([e.actions for e in eps])  # [B, T]
    prompts = [text(e.caption) for e in eps]
    alive = np.array([e.alive for e in eps])[:, None] > np.arange(T)[None]  # [B, T]: step t happened
    true_reward = np.stack([e.rewards for e in eps])  # [B, T]
    true_end = np.zeros((len(eps), T), bool)
    for b, e in enumerate(eps):
        if e.terminated:
            true_end[b, e.alive - 1] = True
    _, tf_reward, tf_done = teacher_forced(model, true, prompts, actions, seeds, steps, heads=True)
    free, free_reward, free_done = model_rollout(model, true[:, 0], prompts, actions, seeds, steps, desc="heads",
                                                 progress=ev.progress, heads=True)
    result = {"worlds": len(seeds), "frames": T, "slip_prob": ev.heads_slip, "match_frames": MATCH_FRAMES,
              "live_frames": int(alive.sum()),
              "teacher_forced": head_scores(tf_reward, tf_done, true_reward, true_end, alive),
              "free_running": head_scores(free_reward, free_done, true_reward, true_end, alive)}
    if game.env == "teacher" and game.motion == "tile":
        from envs.tiles import GEM, HAZARD

        def shown(frames, reward, done):
            onto = np.stack([stepped_onto(f, a, e.style, game.resolution, game.motion)
                             for f, a, e in zip(frames, actions, eps)])
            return {"reward_shown_share": shown_share(reward > EVENT_THRESHOLD, onto, GEM, alive),
                    "done_shown_share": shown_share(done > EVENT_THRESHOLD, onto, HAZARD, alive)}

        result["free_running"].update(shown(free, free_reward, free_done))
        result["teacher_shown"] = shown(true, true_reward, true_end.astype(np.float32))
        if ev.seeker_steps:
            result["seeker"] = eval_seeker(model, ev, text, seeds, steps, game)
    return result
