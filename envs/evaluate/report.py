"""The eval's report: report.md with its plots and strips, and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_report(result: dict, art: dict, out_dir: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    fmt = lambda v, p=2: "–" if v is None else f"{v:.{p}f}"  # noqa: E731
    m = result["model"]
    lines = [f"# Evaluation of `{result['checkpoint']}`", "",
             f"Model: preset {m['preset']}, policy {m['policy']}, RoPE {m['rope']}, {m['steps']} denoising steps, "
             f"text encoder {m['text_encoder']}. Eval seeds: {result['eval_seeds'][0]}..{result['eval_seeds'][-1]} "
             f"({len(result['eval_seeds'])}). Window: {result['window_frames']} frames. "
             f"Took {result['seconds']:.0f} s.", ""]
    if result["skipped"]:
        lines += [f"Skipped: {', '.join(result['skipped'])}.", ""]

    if result["psnr_by_horizon"]:
        hs = list(result["psnr_by_horizon"])
        det = result["fidelity_detail"]
        snapped = det.get("tokenizer_psnr_snapped_heldout")
        crafter = det.get("game") == "crafter"
        rows = (("frozen start frame, PSNR dB (baseline)", "frozen_start_frame_psnr_by_horizon", 2),
                ("worlds still showing the player", "player_visible_by_horizon", 2),
                ("status bar kept (every count right)", "status_bar_kept_by_horizon", 2),
                ("... the start frame's bar held still (baseline)", "status_bar_kept_frozen_by_horizon", 2),
                ("status bar drawn (every tile a real one, any counts)", "status_bar_drawn_by_horizon", 2),
                ("status bar, PSNR dB", "status_bar_psnr_by_horizon", 1),
                ("... the start frame's bar held still", "status_bar_psnr_frozen_by_horizon", 1),
                ("seen content kept, PSNR dB", "seen_psnr_by_horizon", 1),
                ("share of pixels seen in the start frame", "seen_share_by_horizon", 2),
                ("invented content vs the model's own earlier frame, PSNR dB", "invented_psnr_by_horizon", 1),
                ("... the teacher's own", "invented_psnr_teacher_by_horizon", 1),
                ("tile validity", "tile_valid_by_horizon", 2),
                ("... the true frames through the codebook (ceiling)", "tile_valid_snapped_by_horizon", 2),
                ("object tiles drawn (share of cells)", "object_share_by_horizon", 2),
                ("... in the true frames", "object_share_teacher_by_horizon", 2),
                ("worlds alive (averaged)", "worlds_per_horizon", 0))
        truth = "Crafter's frames under the explore policy's actions" if crafter else "teacher's explore actions"
        lines += [f"## Fidelity by horizon ({truth})", "",
                  "| horizon | " + " | ".join(hs) + " |", "|---" * (len(hs) + 1) + "|",
                  "| PSNR dB | " + " | ".join(fmt(result["psnr_by_horizon"][h]) for h in hs) + " |",
                  "| SSIM | " + " | ".join(fmt(result["ssim_by_horizon"][h], 3) for h in hs) + " |",
                  *[f"| {label} | " + " | ".join(fmt(det[key][h], digits) for h in hs) + " |"
                    for label, key, digits in rows if det.get(key) is not None],
                  *[f"| tile validity, {w} worlds (through the codebook) | " + " | ".join(
                      f"{fmt(v[h], 2)} ({fmt(det['tile_valid_snapped_by_weather'][w][h], 2)})"
                      if "tile_valid_snapped_by_weather" in det else fmt(v[h], 2) for h in hs) + " |"
                    for w, v in det.get("tile_valid_by_weather", {}).items()], "",
                  f"Tokenizer round trip of the true frames (the ceiling): {fmt(det['tokenizer_psnr_heldout'])} dB"
                  + (f" ({fmt(snapped)} dB through the codebook the model snaps to)" if snapped is not None else "")
                  + (f"; the player check passes on {fmt(det['player_visible_tokenizer'], 2)} of its frames "
                     f"({fmt(det['player_visible_true'], 2)} of the true ones), the status bar kept on "
                     f"{fmt(det['status_bar_kept_tokenizer'], 2)} and drawn on {fmt(det.get('status_bar_drawn_tokenizer'), 2)} "
                     f"({fmt(det.get('status_bar_drawn_true'), 2)} of the true ones)." if crafter else
                     f"; its tile validity {fmt(det['tile_valid_tokenizer'], 2)} (the teacher's own "
                     f"{fmt(det['tile_valid_teacher'], 2)})."), "",
                  f"Teacher-forced (the true past as context, {det['teacher_forced_frames']} "
                  f"frames a world): PSNR {fmt(det['teacher_forced_psnr'])} dB, the player "
                  f"drawn in {fmt(det['teacher_forced_player_visible'], 2)} of the frames; on "
                  + (f"the frames where the camera moved ({fmt(det['teacher_forced_moved_share'], 2)}), "
                     if crafter else "the frames that moved, ")
                  + f"{fmt(det['teacher_forced_psnr_moved'])} dB against "
                  f"{fmt(det['copy_previous_psnr_moved'])} dB for copying the previous true frame"
                  + ("." if crafter else "; object tiles drawn in "
                     f"{fmt(det.get('teacher_forced_object_share'), 2)} of the cells (the true "
                     f"frames: {fmt(det.get('teacher_forced_object_share_true'), 2)}).")
                  + ((f" Over the pixels the previous true frame showed: {fmt(det['teacher_forced_psnr_shown'])} dB "
                        f"(the ceiling there {fmt(det['tokenizer_psnr_shown'])}, the previous true frame moved with "
                        f"the camera {fmt(det['copy_moved_psnr_shown'])}); over the edge a move brings in "
                        f"({fmt(det['teacher_forced_edge_share'], 2)} of the pixels): "
                        f"{fmt(det['teacher_forced_psnr_edge'])} dB (ceiling {fmt(det['tokenizer_psnr_edge'])})."
                        if "teacher_forced_psnr_shown" in det else "")
                     + (f" The tokenizer's ceiling over these frames: {fmt(det['tokenizer_psnr_teacher_forced'])} dB."
                        if "tokenizer_psnr_teacher_forced" in det else "")
                     + (f" Over every pixel but that edge (what a model can know): "
                        f"{fmt(det['teacher_forced_psnr_known'])} dB (ceiling {fmt(det['tokenizer_psnr_known'])}); "
                        f"those pixels exact to the ceiling, the edge as drawn, would score the whole frame "
                        f"{fmt(det['teacher_forced_psnr_known_exact'])} dB."
                        if "teacher_forced_psnr_known" in det else "")
                     + (" By weather: " + "; ".join(
                         f"{w} {fmt(v)} dB (ceiling {fmt(det['tokenizer_psnr_by_weather'][w])})"
                         for w, v in det["teacher_forced_psnr_by_weather"].items()) + "."
                        if "teacher_forced_psnr_by_weather" in det else "")
                     + (f" The camera: the model's frame is the teacher's move in "
                        f"{fmt(det['teacher_forced_camera_agrees'], 2)} of the frames whose true frame "
                        f"says which move it was ({fmt(det['teacher_forced_camera_judged_share'], 2)}), "
                        f"{fmt(det['teacher_forced_camera_agrees_walked'], 2)} where the player walked, "
                        f"{fmt(det['teacher_forced_camera_agrees_blocked'], 2)} of the "
                        f"{det['teacher_forced_camera_blocked_frames']} judged frames where an obstacle blocked a "
                        f"move ({fmt(det['teacher_forced_blocked_share'], 2)} of all frames were blocked)."
                        if "teacher_forced_camera_agrees" in det else "")), "",
                  "![fidelity](fidelity.png)", "", "![strip](strip.png)", ""]
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        x = np.arange(1, len(det["psnr_curve"]) + 1)
        for a, curve, key, label in ((ax[0], det["psnr_curve"], "psnr_by_horizon", "PSNR (dB)"),
                                     (ax[1], det["ssim_curve"], "ssim_by_horizon", "SSIM")):
            a.plot(x, [np.nan if v is None else v for v in curve], color="0.7", lw=1, label="every frame")
            hv = [int(h) for h in result[key]]
            a.plot(hv, [np.nan if result[key][str(h)] is None else result[key][str(h)] for h in hv],
                   "o-", label="horizons")
            a.set_xscale("log")
            a.set_xlabel("frames after the start frame")
            a.set_ylabel(label)
            a.grid(alpha=0.3)
        ax[0].legend()
        fig.suptitle("Generated vs true frames")
        fig.tight_layout()
        fig.savefig(d / "fidelity.png", dpi=110)
        plt.close(fig)
        _strip(plt, art["strip_true"], art["strip_gen"], art["strip_cols"], d / "strip.png")

    if result["revisit_psnr"]:
        rp, det = result["revisit_psnr"], result["revisit_detail"]
        aways = [str(a) for a in det["away_frames"]]
        lines += ["## Revisit memory (PSNR of the frames back at the place left)", "",
                  f"Lead-in {det['lead_in']} frames, then out A/2 and back A/2, then {det['return_frames']} "
                  f"NOOP frames scored. Clean trajectories (never blocked, back exactly): "
                  f"{det['clean_share']:.0%}.", "",
                  "| policy | " + " | ".join(f"A={a}" for a in aways) + " |", "|---" * (len(aways) + 1) + "|"]
        lines += [f"| {p} | " + " | ".join(fmt((v or {}).get(a)) for a in aways) + " |" for p, v in rp.items()]
        abl = (result.get("ablations") or {}).get("memory_updates_off", {})
        if "revisit_psnr" in abl:
            lines += ["| evolving, no updates | " + " | ".join(fmt(abl["revisit_psnr"][a]) for a in aways) + " |"]
        lines += ["", "Consistency (return frames vs the model's own frame at departure, dB): " +
                  "; ".join(f"{p}: " + ", ".join(fmt((v or {}).get(a)) for a in aways)
                            for p, v in det["consistency_psnr"].items())
                  + "; teacher: " + ", ".join(fmt(det["teacher_consistency_psnr"][a]) for a in aways), "",
                  "The model's frame at the place left vs the truth there (dB; what a perfect memory "
                  "of the model's own world scores on return): " +
                  "; ".join(f"{p}: " + ", ".join(fmt((v or {}).get(a)) for a in aways)
                            for p, v in det["departure_psnr"].items()), "",
                  "![revisit](revisit.png)", "", "![revisit strip](revisit_strip.png)", ""]
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for p, v in rp.items():
            if v is not None:
                ax.plot([int(a) for a in aways], [np.nan if v[a] is None else v[a] for a in aways], "o-", label=p)
        if "revisit_psnr" in abl:
            ax.plot([int(a) for a in aways], [np.nan if abl["revisit_psnr"][a] is None else abl["revisit_psnr"][a]
                                              for a in aways], "x--", color="0.4", label="evolving, no updates")
        ax.axvline(result["window_frames"], color="0.8", ls=":", label="window size")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("away time A (frames)")
        ax.set_ylabel("PSNR on return (dB)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(d / "revisit.png", dpi=110)
        plt.close(fig)
        _revisit_strip(plt, art["revisit"], d / "revisit_strip.png")

    if result["prompt_adherence_detail"]:
        a = result["prompt_adherence_detail"]
        lines += ["## Prompt adherence (biome classifier)", "",
                  f"Classifier held-out accuracy on teacher frames: {a['classifier_accuracy']:.1%}.", "",
                  "| | model | teacher (ceiling) |", "|---|---|---|",
                  f"| start, train captions | {a['start_train']:.1%} | {a['start_teacher']:.1%} |",
                  f"| start, held-out paraphrases | {a['start_heldout']:.1%} | |",
                  f"| no start frame (drawn from the caption alone) | "
                  f"{fmt(100 * a['start_generated'] if 'start_generated' in a else None, 1)}% | |",
                  f"| switch: within {a['switch_frames']} frames | {a['switch_within']:.1%} | "
                  f"{a['switch_within_teacher']:.1%} |",
                  f"| switch: at frame {a['switch_frames']} | {a['switch_at']:.1%} | {a['switch_at_teacher']:.1%} |",
                  f"| switch, held-out paraphrase: within / at | {a['switch_within_heldout']:.1%} / "
                  f"{a['switch_at_heldout']:.1%} | |", "",
                  "Per biome (start, train captions): " +
                  ", ".join(f"{b} {v:.0%}" for b, v in a["per_biome"].items()), "",
                  f"Per biome (switch to it, within {a['switch_frames']} frames): " +
                  ", ".join(f"{b} {fmt(None if v is None else 100 * v, 0)}%" for b, v in a["switch_per_biome"].items()),
                  "",
                  "![adherence after a switch](adherence.png)", ""]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key, label in (("switch_curve", "model, train captions"),
                           ("switch_curve_heldout", "model, held-out paraphrases"),
                           ("switch_curve_teacher", "teacher (ceiling)")):
            ax.plot(range(1, len(a[key]) + 1), a[key], marker=".", label=label)
        ax.set_xlabel("frames after the prompt switch")
        ax.set_ylabel("share showing the new biome")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(d / "adherence.png", dpi=110)
        plt.close(fig)

    if result["stability"]:
        s = result["stability"]
        lines += ["## Stability", "",
                  f"{s['frames']} frames of random actions: **{'stable' if result['stable'] else 'NOT stable'}**. "
                  f"NaN-free: {s['nan_free']}; frames out of the true frames' range: {s['out_of_range_frames']} "
                  f"(mean {fmt(s['frame_mean_range'][0], 1)}..{fmt(s['frame_mean_range'][1], 1)}, allowed "
                  f"{fmt(s['allowed_mean_range'][0], 1)}..{fmt(s['allowed_mean_range'][1], 1)}; std "
                  f"{fmt(s['frame_std_range'][0], 1)}..{fmt(s['frame_std_range'][1], 1)}, allowed "
                  f"{fmt(s['allowed_std_range'][0], 1)}..{fmt(s['allowed_std_range'][1], 1)}); latency p50 "
                  f"{s['latency_ms_p50']:.1f} ms, last/first {s['ratio_window_frames']} frames: wall "
                  f"{s['latency_ratio_last_first']:.2f}, CPU p50 {s['cpu_ratio_last_first_p50']:.2f}. "
                  f"The player is still drawn in {s['player_visible_share']:.1%} of the frames (first / last "
                  f"{s['ratio_window_frames']}: {s['player_visible_share_first_last'][0]:.1%} / "
                  f"{s['player_visible_share_first_last'][1]:.1%}; needed {s['player_visible_min']:.0%})."
                  + (f" The status bar is drawn in {s['status_bar_drawn_share']:.1%} (first / last: "
                     f"{s['status_bar_drawn_share_first_last'][0]:.1%} / {s['status_bar_drawn_share_first_last'][1]:.1%})."
                     if "status_bar_drawn_share" in s else ""), ""]

    if result.get("heads"):
        h = result["heads"]
        pct = lambda v: "–" if v is None else f"{v:.0%}"  # noqa: E731
        lines += ["## Reward and done heads (what World-v0 pays and ends on)", "",
                  f"{h['worlds']} worlds x {h['frames']} explore frames"
                  + (" of Crafter (rewards: achievements; ends: deaths)" if result.get("game") == "crafter" else
                     f", hazard slips {h['slip_prob']:.0%}")
                  + f"; an event matches within {h['match_frames']} frame(s).", "",
                  "| run | reward precision | reward recall | model / teacher pickups | dream reward the teacher "
                  "does not pay | done precision | done recall | model / teacher ends |",
                  "|---|---|---|---|---|---|---|---|"]
        for run in ("teacher_forced", "free_running"):
            r, e = h[run]["reward"], h[run]["done"]
            lines.append(f"| {run.replace('_', '-')} | {pct(r['precision'])} | {pct(r['recall'])} | "
                         f"{r['model_events']} / {r['teacher_events']} | {pct(r['unearned_share'])} | "
                         f"{pct(e['precision'])} | {pct(e['recall'])} | {e['model_events']} / {e['teacher_events']} |")
        lines.append("")
        if "teacher_shown" in h:
            f, t = h["free_running"], h["teacher_shown"]
            lines += [f"Free-running, asked of the dream itself: {pct(f['reward_shown_share'])} of its rewards "
                      f"and {pct(f['done_shown_share'])} of its ends came where its own frame showed a gem / "
                      f"hazard on the tile the action walked onto (the teacher's own events: "
                      f"{pct(t['reward_shown_share'])} / {pct(t['done_shown_share'])}).", ""]
        if "seeker" in h:
            sk = h["seeker"]
            dream, real = sk["dream"], sk["teacher"]
            lines += [f"A scripted gem seeker ({sk['worlds']} worlds x {sk['steps']} steps, walking to the nearest gem "
                      f"its frame shows): {dream['reward_per_1000']:.1f} gems per 1,000 steps in the dream, "
                      f"{real['reward_per_1000']:.1f} in the teacher ({pct(sk['share'])}); it saw a gem in "
                      f"{pct(dream['gem_frames'])} / {pct(real['gem_frames'])} of the frames, and the dream paid "
                      f"{pct(dream['gem_stepons_paid'])} of its steps onto a gem it showed.", ""]

    if result["ablations"]:
        lines += ["## Ablations", ""]
        rope = result["ablations"].get("rope", {})
        if "psnr_curve" in rope and result["fidelity_detail"]:
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for name, curve in ((result["model"]["rope"], result["fidelity_detail"]["psnr_curve"]),
                                (rope["rope"], rope["psnr_curve"])):
                ax.plot(np.arange(1, len(curve) + 1), [np.nan if v is None else v for v in curve],
                        label=f"rope={name}")
            ax.set_xscale("log")
            ax.set_xlabel("frames after the start frame")
            ax.set_ylabel("PSNR vs true frames (dB)")
            ax.grid(alpha=0.3)
            ax.legend()
            fig.tight_layout()
            fig.savefig(d / "rope.png", dpi=110)
            plt.close(fig)
            lines += ["![RoPE ablation: PSNR by frame](rope.png)", ""]
        lines += ["```json", json.dumps(result["ablations"], indent=1), "```", ""]
    (d / "report.md").write_text("\n".join(lines))
    return d / "report.md"


def save_strip(true: np.ndarray, gen: np.ndarray, cols: list[int], path: Path) -> Path:
    """uint8 [S, len(cols), R, R, 3] x 2 -> a PNG: rows (true, generated) per seed, columns the
    start frame and each horizon."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    _strip(plt, true, gen, cols, path)
    return path


def _strip(plt, true: np.ndarray, gen: np.ndarray, cols: list[int], path: Path) -> None:
    """Rows: (true, generated) per seed; columns: the start frame and each horizon."""
    rows = [r for i in range(len(true)) for r in ((f"true #{i}", true[i]), (f"model #{i}", gen[i]))]
    fig, ax = plt.subplots(len(rows), len(cols), figsize=(1.3 * len(cols), 1.4 * len(rows)), squeeze=False)
    for r, (name, frames) in enumerate(rows):
        for c, h in enumerate(cols):
            ax[r, c].imshow(frames[c], interpolation="nearest")
            ax[r, c].set_xticks([])
            ax[r, c].set_yticks([])
            if r == 0:
                ax[r, c].set_title("start" if h == 0 else f"h={h}", fontsize=8)
            if c == 0:
                ax[r, c].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _revisit_strip(plt, revisit, path: Path) -> None:
    """First seed, longest away time: departure, farthest point, return (truth and every policy)."""
    plan, frames = revisit
    away = max(plan)
    r = plan[away][0]
    dep, far, back = r.depart, r.depart + away // 2, len(r.episode.actions)
    rows = [("teacher", r.episode.frames)] + [(p, f[away][0]) for p, f in frames.items()]
    fig, ax = plt.subplots(len(rows), 3, figsize=(4.2, 1.4 * len(rows)), squeeze=False)
    for i, (name, fr) in enumerate(rows):
        for j, (t, title) in enumerate(((dep, "departure"), (far, "farthest"), (back, "return"))):
            ax[i, j].imshow(fr[t], interpolation="nearest")
            ax[i, j].set_xticks([])
            ax[i, j].set_yticks([])
            if i == 0:
                ax[i, j].set_title(f"{title} (f{t})", fontsize=8)
            if j == 0:
                ax[i, j].set_ylabel(name, fontsize=8)
    fig.suptitle(f"revisit, A={away}, seed {r.episode.seed}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_json(result: dict, path: str | Path) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
