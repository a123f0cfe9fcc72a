"""Section 3, prompt adherence: does the world show the prompt's biome, and follow a switch?"""

from __future__ import annotations

import numpy as np

from .config import EvalConfig, Game
from .rollouts import model_rollout, teacher_run


def eval_adherence(model, ev: EvalConfig, text, clf, seeds: list[int], steps, game: Game,
                   recache: bool = True) -> dict:
    """recache: the switch re-caches the window under the new prompt (what play does);
    False measures the switch without it (the prompt only reaches frames made afterwards)."""
    from envs.style import BIOMES, caption

    worlds = [(b, s) for b in range(len(BIOMES)) for s in seeds]  # biome-major
    target = np.array([b for b, _ in worlds])
    T, K, S, S_curve = ev.adherence_frames, ev.switch_after, ev.switch_frames, ev.switch_curve_frames

    def share(frames: np.ndarray, biomes: np.ndarray) -> np.ndarray:  # [B, n, ...] -> hit [B, n]
        B, n = frames.shape[:2]
        pred = clf.predict(frames.reshape(B * n, *frames.shape[2:])).reshape(B, n)
        return pred == biomes[:, None]

    # (a) start from a teacher frame of biome X, prompted with X
    eps = [teacher_run(s, T, game, style=_style(b, s)) for b, s in worlds]
    first = np.stack([e.frames[0] for e in eps])
    acts = np.stack([e.actions for e in eps])
    seeds_b = [s for _, s in worlds]
    heldout = [caption(e.style, np.random.default_rng(e.seed), heldout=True) for e in eps]
    hits = {}
    for name, caps in (("train", [e.caption for e in eps]), ("heldout", heldout)):
        gen = model_rollout(model, first, [text(c) for c in caps], acts, seeds_b, steps,
                            desc=f"adherence {name}", progress=ev.progress)
        hits[name] = share(gen[:, 1:], target)
    teacher_hits = share(np.stack([e.frames[1:] for e in eps]), target)
    # (a') no start frame: the world drawn from the train caption alone, as `play --start generated`
    gen = model_rollout(model, None, [text(e.caption) for e in eps], acts, seeds_b, steps,
                        desc="adherence generated", progress=ev.progress)
    hits["generated"] = share(gen, target)

    # (b) switch from biome A to B after K frames; score frames K+1 .. K+S
    new = (target + 1 + np.arange(len(worlds)) % (len(BIOMES) - 1)) % len(BIOMES)  # != target
    new_styles = [e.style.replace(biome=BIOMES[n]) for e, n in zip(eps, new)]
    sw_eps = [teacher_run(s, K + S_curve, game, style=_style(b, s), switch=(K, st))
              for (b, s), st in zip(worlds, new_styles)]
    first = np.stack([e.frames[0] for e in sw_eps])
    acts = np.stack([e.actions for e in sw_eps])
    after = slice(K + 1, K + S_curve + 1)  # hit [:, i] is frame i + 1 after the switch
    rng = np.random.default_rng(0)
    sw = {}
    for name, heldout_words in (("", False), ("_heldout", True)):
        caps = [caption(st, rng, heldout=heldout_words) for st in new_styles]
        gen = model_rollout(model, first, [text(e.caption) for e in sw_eps], acts, seeds_b, steps,
                            switch=(K, [text(c) for c in caps]), desc=f"switch{name}", progress=ev.progress,
                            recache=recache)
        sw[name] = share(gen[:, after], new)
    sw["_teacher"] = share(np.stack([e.frames[after] for e in sw_eps]), new)
    out = {"start_train": float(hits["train"].mean()), "start_heldout": float(hits["heldout"].mean()),
           "start_teacher": float(teacher_hits.mean()),
           "per_biome": {b: float(hits["train"][target == i].mean()) for i, b in enumerate(BIOMES)},
           "per_biome_teacher": {b: float(teacher_hits[target == i].mean()) for i, b in enumerate(BIOMES)},
           "start_generated": float(hits["generated"].mean()),
           "per_biome_generated": {b: float(hits["generated"][target == i].mean()) for i, b in enumerate(BIOMES)},
           "start_frames": T, "switch_after": K, "switch_frames": S}
    for name, h in sw.items():
        out[f"switch_within{name}"] = float(h[:, :S].mean())
        out[f"switch_at{name}"] = float(h[:, S - 1].mean())
        out[f"switch_curve{name}"] = [float(v) for v in h.mean(0)]  # frames 1 .. switch_curve_frames after
    for name in ("", "_teacher"):  # by the new biome; None: no world switched to it
        out[f"switch_per_biome{name}"] = {b: float(sw[name][new == i, :S].mean()) if (new == i).any() else None
                                          for i, b in enumerate(BIOMES)}
    out["switch_recache"] = bool(recache)
    out.update(classifier_accuracy=clf.accuracy, classifier_key=clf.cfg.key())
    return out


def _style(biome: int, seed: int):
    """Biome `biome` with a time of day and weather drawn from the seed."""
    from envs.style import BIOMES, TIMES_OF_DAY, WEATHERS, Style

    rng = np.random.default_rng([seed, biome])
    return Style(BIOMES[biome], str(rng.choice(TIMES_OF_DAY)), str(rng.choice(WEATHERS)))
