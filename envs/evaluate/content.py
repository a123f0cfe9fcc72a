"""What a generated world keeps, invents and draws, measured against the teacher's geometry.

An open world's frames cannot all be scored against the truth: after a few
steps the model draws places the start frame never showed, and any plausible
tile there is right. So `echo-infinity eval` splits the frame by where its
pixels are in the world, which the teacher's positions give exactly (same
seed and actions as the model's rollout):

- seen content kept: pixels of frame h whose world position was visible in
  the start frame are scored against the truth (PSNR over those pixels);
- invented content persists: pixels of frame h whose world position the
  model itself drew `lag` frames earlier, outside the start frame, are scored
  against that earlier frame of the model's own (the teacher's own value,
  which weather particles keep below the cap, is reported beside it);
- new content realistic (tile validity): the share of a frame's tile cells
  that match some tile of the teacher's atlas for the world's style closer
  than the atlas's own tiles are to each other (a threshold fixed from the
  teacher's atlases alone, see `tile_threshold`) and keep at least a quarter
  of its detail (a flat patch of the mean colour is not a tile);
- objects kept: the share of a frame's tile cells drawn as a valid *object*
  tile (tree, rock, lava, gem, block, stump: anything but the biome's ground),
  reported beside the teacher's own share for the same frames. A world that
  dissolves into its bare ground scores high tile validity (ground tiles are
  real tiles) but its object share falls towards 0.
The player's tile is left out everywhere (the player check covers it).
Positions are the teacher's base pixels (`info["position"]`, the player's
centre), views follow `envs.teacher.player_origin`.
"""

from __future__ import annotations

import functools

import numpy as np

from .config import PSNR_CAP
from .metrics import mean_or_none

TRIM = 0.1
"""Tile matching drops the worst 10% of a cell's pixels: weather particles fall anywhere."""


def view_origin(position, motion: str) -> tuple[int, int]:
    """(y, x) in base pixels of the view's top-left for the player at `position` (x, y)."""
    from envs.teacher import VIEW, player_origin
    from envs.tiles import BASE_TILE

    oy, ox = player_origin(VIEW, motion)
    half = BASE_TILE // 2
    return int(position[1]) - half - oy, int(position[0]) - half - ox


def player_box(resolution: int, motion: str) -> tuple[int, int, int]:
    """(y, x, size) in screen pixels of the player's tile."""
    from envs.teacher import VIEW, player_origin
    from envs.tiles import BASE_TILE

    y, x = player_origin(resolution, motion)
    return y, x, BASE_TILE * (resolution // VIEW)


def shared_mask(pos_t, pos_ref, resolution: int, motion: str) -> np.ndarray:
    """bool [R, R]: pixels of the frame at `pos_t` whose world position the frame at `pos_ref`
    also showed, without the player's tile in either frame."""
    from envs.teacher import VIEW

    s = resolution // VIEW
    (vy, vx), (ry, rx) = view_origin(pos_t, motion), view_origin(pos_ref, motion)
    world = np.arange(resolution) // s  # base pixel of each screen row / column
    mask = ((vy + world >= ry) & (vy + world < ry + VIEW))[:, None] & \
           ((vx + world >= rx) & (vx + world < rx + VIEW))[None, :]
    py, px, ts = player_box(resolution, motion)
    mask[py:py + ts, px:px + ts] = False  # the player in this frame
    y0, x0 = py + (ry - vy) * s, px + (rx - vx) * s  # where the reference frame's player stood
    mask[max(y0, 0):max(y0 + ts, 0), max(x0, 0):max(x0 + ts, 0)] = False
    return mask


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 [T, R, R, 3] x 2, bool [T, R, R] -> [T] PSNR over the masked pixels (NaN where none)."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2  # [T, R, R, 3]
    n = mask.sum(axis=(1, 2)) * 3
    mse = (d * mask[..., None]).sum(axis=(1, 2, 3)) / np.maximum(n, 1)
    with np.errstate(divide="ignore"):
        out = np.minimum(10 * np.log10(255.0**2 / mse), PSNR_CAP)
    return np.where(n > 0, out, np.nan)


def shown_edge_psnr(tf: np.ndarray, ceiling: np.ndarray, moved: np.ndarray, target: np.ndarray,
                    shown: np.ndarray, edge: np.ndarray, alive: np.ndarray) -> dict:
    """The teacher-forced split's scores: tf, ceiling (the tokenizer's round trip), moved (the
    previous true frame moved with the camera), target uint8 [B, T, R, R, 3]; shown, edge bool
    [B, T, R, R]; alive bool [B, T] -> teacher_forced_psnr_shown / _edge / _known, tokenizer_psnr_shown /
    _edge / _known, copy_moved_psnr_shown, teacher_forced_edge_share (frames with no such pixel left
    out), tokenizer_psnr_teacher_forced (the ceiling over these frames, the whole frame: the
    whole-frame ceilings of the eval span the whole rollout, and Crafter's night, which the
    tokenizer keeps worse, falls after the teacher-forced frames) and teacher_forced_psnr_known_exact.
    "known" is every pixel but the edge (the world nobody showed the model one frame earlier):
    what a model can be held to. `_known_exact` is the whole-frame figure with every known pixel
    at the ceiling and the edge as the model drew it: how far the whole frame can rise by the
    known pixels alone, while the edge stays a guess."""
    def score(frames: np.ndarray, mask: np.ndarray) -> float | None:  # mean over live frames with such pixels
        per_frame = np.stack([masked_psnr(f, t, m) for f, t, m in zip(frames, target, mask)])  # [B, T]
        return mean_or_none(np.where(alive & mask.any(axis=(2, 3)), per_frame, np.nan))

    out = {}
    for name, mask in (("shown", shown), ("edge", edge), ("known", ~edge)):
        out[f"teacher_forced_psnr_{name}"] = score(tf, mask)
        out[f"tokenizer_psnr_{name}"] = score(ceiling, mask)
        if name == "shown":
            out["copy_moved_psnr_shown"] = score(moved, mask)
    out["teacher_forced_edge_share"] = mean_or_none(np.where(alive, edge.mean(axis=(2, 3)), np.nan))
    whole = np.ones_like(edge)
    out["tokenizer_psnr_teacher_forced"] = score(ceiling, whole)
    out["teacher_forced_psnr_known_exact"] = score(np.where(edge[..., None], tf, ceiling), whole)
    return out


def seen_and_invented(gen: np.ndarray, true: np.ndarray, positions, resolution: int, motion: str,
                      lag: int) -> dict[str, np.ndarray]:
    """One world: gen, true uint8 [T + 1, R, R, 3] (frame 0 = the start frame), positions
    [(x, y)] * (T + 1) of the teacher -> per frame 1..T:
    seen [T] PSNR of gen vs true over the start frame's world; seen_share [T] its pixel share;
    invented [T] PSNR of gen vs gen `lag` frames earlier over their shared world outside the
    start view (NaN for t <= lag); invented_teacher [T] the same for the true frames;
    invented_share [T]."""
    T = len(gen) - 1
    seen = np.stack([shared_mask(positions[t], positions[0], resolution, motion) for t in range(1, T + 1)])
    out = {"seen": masked_psnr(gen[1:], true[1:], seen), "seen_share": seen.mean(axis=(1, 2))}
    inv = np.zeros_like(seen)
    earlier = np.zeros_like(gen[1:])
    true_earlier = np.zeros_like(true[1:])
    for t in range(lag + 1, T + 1):
        m = shared_mask(positions[t], positions[t - lag], resolution, motion) & ~seen[t - 1]
        inv[t - 1] = m
        earlier[t - 1] = reproject(gen[t - lag], positions[t - lag], positions[t], resolution, motion)
        true_earlier[t - 1] = reproject(true[t - lag], positions[t - lag], positions[t], resolution, motion)
    out["invented"] = masked_psnr(gen[1:], earlier, inv)
    out["invented_teacher"] = masked_psnr(true[1:], true_earlier, inv)
    out["invented_share"] = inv.mean(axis=(1, 2))
    return out


def reproject(frame: np.ndarray, pos_from, pos_to, resolution: int, motion: str) -> np.ndarray:
    """The frame drawn at `pos_from`, moved to the screen coordinates of the view at `pos_to`
    (pixels outside it are zero; callers mask them)."""
    from envs.teacher import VIEW

    s = resolution // VIEW
    (fy, fx), (ty, tx) = view_origin(pos_from, motion), view_origin(pos_to, motion)
    dy, dx = (ty - fy) * s, (tx - fx) * s  # screen pixel p at pos_to is pixel p + d at pos_from
    out = np.zeros_like(frame)
    R = resolution
    ys, yd = slice(max(dy, 0), min(R + dy, R)), slice(max(-dy, 0), min(R - dy, R))
    xs, xd = slice(max(dx, 0), min(R + dx, R)), slice(max(-dx, 0), min(R - dx, R))
    out[yd, xd] = frame[ys, xs]
    return out


# --------------------------------------------------------------------------------------------
# Tile validity


def tile_cells(frames: np.ndarray, positions, resolution: int, motion: str) -> np.ndarray:
    """uint8 [T, R, R, 3] -> float32 [T, K, ts, ts, 3]: the whole tile cells of each frame on the
    world's tile grid, the player's cell left out (K fixed per mode: cells wholly inside the frame)."""
    from envs.teacher import VIEW
    from envs.tiles import BASE_TILE

    s = resolution // VIEW
    ts = BASE_TILE * s
    py, px, _ = player_box(resolution, motion)
    out = []
    for f, pos in zip(frames, positions):
        vy, vx = view_origin(pos, motion)
        oy, ox = (-vy) % BASE_TILE * s, (-vx) % BASE_TILE * s  # first whole cell's screen offset
        n = (resolution - max(oy, ox)) // ts
        cells = [f[oy + i * ts: oy + (i + 1) * ts, ox + j * ts: ox + (j + 1) * ts]
                 for i in range(n) for j in range(n)
                 if not (oy + i * ts < py + ts and py < oy + (i + 1) * ts
                         and ox + j * ts < px + ts and px < ox + (j + 1) * ts)]
        out.append(np.stack(cells))
    k = min(len(c) for c in out)
    return np.stack([c[:k] for c in out]).astype(np.float32)


def cell_match(cells: np.ndarray, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cells float [..., ts, ts, 3], tiles uint8 [K, ts, ts, 3] -> (best-match PSNR [...] over the
    atlas tiles, each cell's worst TRIM share of pixels dropped; index of that tile [...])."""
    lead = cells.shape[:-3]
    c = cells.reshape(-1, 1, *cells.shape[-3:])
    t = tiles.astype(np.float32)[None]
    per_px = ((c - t) ** 2).mean(-1).reshape(c.shape[0], t.shape[1], -1)  # [M, K, P]
    keep = int(round(per_px.shape[-1] * (1 - TRIM)))
    mse = np.partition(per_px, keep - 1, axis=-1)[..., :keep].mean(-1)  # [M, K]
    best = mse.argmin(-1)
    with np.errstate(divide="ignore"):
        db = np.minimum(10 * np.log10(255.0**2 / mse.min(-1)), PSNR_CAP)
    return db.reshape(lead), best.reshape(lead)


def cell_match_psnr(cells: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    return cell_match(cells, tiles)[0]


@functools.lru_cache(maxsize=256)
def atlas_tiles(style, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [K, ts, ts, 3] the atlas's distinct tiles for `style` (variant slots repeat
    sprites), bool [K] which are objects, i.e. not one of the ground's variants)."""
    from envs.tiles import GROUND

    distinct, cls = atlas_classes(style, resolution)
    return distinct, cls != GROUND


def atlas_classes(style, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [K, ts, ts, 3] the atlas's distinct tiles for `style`, int [K] each one's class,
    `envs.tiles.GROUND` .. `STUMP`)."""
    from envs.teacher import VIEW
    from envs.tiles import BASE_TILE, N_VARIANTS, Atlas

    tiles = Atlas(style, BASE_TILE * (resolution // VIEW)).tiles
    distinct, first = np.unique(tiles, axis=0, return_index=True)
    return distinct, first // N_VARIANTS


def stepped_onto(frames: np.ndarray, actions: np.ndarray, style, resolution: int, motion: str) -> np.ndarray:
    """A teacher world's frames uint8 [T + 1, R, R, 3] and actions [T] (tile-step motion) -> int [T]: the
    class (`envs.tiles.GROUND` .. `STUMP`) of the atlas tile nearest to the cell that action t
    walks the player onto, as frame t draws it; -1 where the action does not move the player.
    What a world showed where its reward or done head then fired (`envs.evaluate.heads`)."""
    from world.actions import move_neighbours
    from world.prev_frame import CENTRE, offset

    if motion != "tile":
        raise ValueError("stepped_onto needs tile-step motion: a smooth move does not land on a cell")
    py, px, ts = player_box(resolution, motion)
    moves = move_neighbours("teacher", int(actions.max()) + 1)
    tiles, cls = atlas_classes(style, resolution)
    out = np.full(len(actions), -1)
    for t, a in enumerate(actions):
        k = moves[int(a)]
        if k == CENTRE:
            continue
        dy, dx = offset(k)
        y, x = py + dy * ts, px + dx * ts
        cell = frames[t, y:y + ts, x:x + ts].astype(np.float32)
        out[t] = cls[cell_match(cell[None], tiles)[1][0]]
    return out


@functools.lru_cache(maxsize=4)
def tile_threshold(resolution: int) -> dict[str, float]:
    """The tile-validity threshold, from the teacher's atlases alone: over all 96 styles, each
    tile's best-match PSNR against the *other* tiles of its atlas; the median of those is how
    close two different real tiles come. A generated cell at least that close to a real tile
    is drawn as that tile."""
    from envs.style import BIOMES, TIMES_OF_DAY, WEATHERS, Style

    nearest = []
    for b in BIOMES:
        for tod in TIMES_OF_DAY:
            for w in WEATHERS:
                tiles = atlas_tiles(Style(b, tod, w), resolution)[0]
                for i in range(len(tiles)):
                    others = np.delete(tiles, i, axis=0)
                    nearest.append(float(cell_match_psnr(tiles[i:i + 1].astype(np.float32), others)[0]))
    return {"threshold_db": float(np.median(nearest)), "nearest_other_p10": float(np.percentile(nearest, 10)),
            "nearest_other_p90": float(np.percentile(nearest, 90))}


def tile_validity(frames: np.ndarray, positions, style, resolution: int, motion: str,
                  threshold: float) -> np.ndarray:
    """uint8 [T, R, R, 3] of a world in `style` -> [T] share of its tile cells that match a real tile."""
    return tile_census(frames, positions, style, resolution, motion, threshold)[0]


def tile_census(frames: np.ndarray, positions, style, resolution: int, motion: str,
                threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [T, R, R, 3] of a world in `style` -> ([T] share of its tile cells that match a real
    tile, [T] share of its tile cells that match a real *object* tile).

    A cell matches when it is within `threshold` dB of a tile and keeps at least a quarter of
    that tile's detail (pixel std): a flat patch of the ground's mean colour is close to a ground
    tile in PSNR, but it is the blur a world dissolves into, not a tile."""
    cells = tile_cells(frames, positions, resolution, motion)  # [T, K, ts, ts, 3]
    tiles, is_object = atlas_tiles(style, resolution)
    db, best = cell_match(cells, tiles)
    spread = lambda x: x.std(axis=(-3, -2)).mean(-1)  # noqa: E731  spatial std per channel, averaged
    detail = spread(cells) >= 0.25 * spread(tiles.astype(np.float32))[best]
    valid = (db >= threshold) & detail  # [T, K]
    return valid.mean(axis=1), (valid & is_object[best]).mean(axis=1)
