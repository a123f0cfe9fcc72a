"""Section 2, revisit memory: leave a place, come back, compare with the truth and with itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .config import EvalConfig, Game, INVERSE, MOVE, NOOP, PERPENDICULAR
from .metrics import mean_or_none, psnr
from .rollouts import Checkpoint, Episode, model_rollout, teacher_run


@dataclass
class Revisit:
    """A scripted lead-in + out-and-back trajectory and its teacher frames."""

    episode: Episode
    lead: str
    out: str
    quality: int  # 2 clean (never blocked, back exactly), 1 back exactly, 0 alive, -1 died
    depart: int  # frame index at the place left (before the first out move)


def _script(lead: str, out: str, lead_in: int, away: int, settle: int) -> list[int]:
    half = away // 2
    return [MOVE[lead]] * lead_in + [MOVE[out]] * half + [MOVE[INVERSE[out]]] * (away - half) + [NOOP] * settle


def _quality(ep: Episode, depart: int, away: int) -> int:
    if ep.alive < len(ep.actions):
        return -1
    pos = ep.positions
    back = pos[depart + away] == pos[depart]
    moved = all(pos[i + 1] != pos[i] for i in range(depart, depart + away))
    return 2 if back and moved else int(back)


def revisit_trajectory(seed: int, away: int, ev: EvalConfig, game: Game | int) -> Revisit:
    """The best (lead, out) direction pair for this seed (first found of the best quality)."""
    dirs = list(MOVE)
    k = seed % 4
    best = None
    for out in dirs[k:] + dirs[:k]:
        for lead in PERPENDICULAR[out]:
            acts = _script(lead, out, ev.lead_in, away, ev.return_frames)
            ep = teacher_run(seed, len(acts), game, actions=acts)
            r = Revisit(ep, lead, out, _quality(ep, ev.lead_in, away), ev.lead_in)
            if best is None or r.quality > best.quality:
                best = r
            if best.quality == 2:
                return best
    return best


def eval_revisit(model, ev: EvalConfig, text, trajectories: dict[int, list[Revisit]], steps,
                 tag: str) -> tuple[dict, dict, dict]:
    """-> ({away: dB}, {"consistency": {away: dB}, "departure": {away: dB}}, {away: generated
    frames [B, T + 1, ...]}). consistency: the return vs the model's own frame at the place left;
    departure: that frame vs the truth, what a perfect memory of the model's own world scores on
    return (a world faded to bare ground by then can score more: PSNR prefers ground to a
    misplaced tree)."""
    scores, detail, frames = {}, {"consistency": {}, "departure": {}}, {}
    for away, trs in trajectories.items():
        true = np.stack([r.episode.frames for r in trs])  # [B, T + 1, R, R, 3]
        acts = np.stack([r.episode.actions for r in trs])
        gen = model_rollout(model, true[:, 0], [text(r.episode.caption) for r in trs], acts,
                            [r.episode.seed for r in trs], steps, desc=f"revisit {tag} A={away}",
                            progress=ev.progress)
        ret = slice(-ev.return_frames, None)
        ok = np.array([r.quality >= 0 for r in trs])  # a run that died has no true frames to return to
        left = gen[ok, ev.lead_in][:, None]  # [B, 1, ...] the model's frame at the place left
        scores[str(away)] = mean_or_none(psnr(gen[ok, ret], true[ok, ret]))
        detail["consistency"][str(away)] = mean_or_none(psnr(gen[ok, ret], left))
        detail["departure"][str(away)] = mean_or_none(psnr(left, true[ok, ev.lead_in][:, None]))
        frames[away] = gen
    return scores, detail, frames


def revisit_plan(ev: EvalConfig, window: int, seeds: list[int], game: Game) -> dict[int, list[Revisit]]:
    return {m * window: [revisit_trajectory(s, m * window, ev, game) for s in seeds]
            for m in ev.away_multiples}


def revisit_section(ck: Checkpoint, ev: EvalConfig, text, plan, steps, policies: Sequence[str],
                    **memory) -> tuple[dict, dict, dict]:
    """Every policy on the same weights; one whose memory weights the checkpoint lacks scores None.
    -> ({policy: {away: dB}}, {policy: `eval_revisit`'s detail}, {policy: frames})."""
    scores, details, frames = {}, {}, {}
    for policy in policies:
        try:
            model = ck.model(policy=policy, **memory)
        except ValueError:  # e.g. evolving on a checkpoint trained without evolving memory
            scores[policy] = details[policy] = None
            continue
        scores[policy], details[policy], frames[policy] = eval_revisit(model, ev, text, plan, steps, policy)
    return scores, details, frames


def revisit_detail(ev: EvalConfig, plan: dict[int, list[Revisit]], details: dict) -> dict:
    teacher = {}
    for away, trs in plan.items():
        true = np.stack([r.episode.frames for r in trs if r.quality >= 0])
        teacher[str(away)] = mean_or_none(psnr(true[:, -ev.return_frames:], true[:, ev.lead_in][:, None]))
    every = [r for trs in plan.values() for r in trs]
    per_policy = {key: {p: None if d is None else d[key] for p, d in details.items()}
                  for key in ("consistency", "departure")}
    return {"away_frames": [int(a) for a in plan], "lead_in": ev.lead_in, "return_frames": ev.return_frames,
            "consistency_psnr": per_policy["consistency"], "teacher_consistency_psnr": teacher,
            "departure_psnr": per_policy["departure"],
            "clean_share": float(np.mean([r.quality == 2 for r in every])),
            "trajectories": [{"seed": r.episode.seed, "away": int(a), "lead": r.lead, "out": r.out,
                              "quality": ["died", "alive", "returned", "clean"][r.quality + 1]}
                             for a, trs in plan.items() for r in trs]}
