"""The teacher game: determinism, revisits, persistence, style, the Gymnasium contract."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.style import BIOMES, TIMES_OF_DAY, WEATHERS, Style, all_captions, caption, parse_prompt
from envs.teacher import DOWN, LEFT, NOOP, RIGHT, UP, USE, TeacherEnv
from envs.terrain import CHUNK, TileMap
from envs.tiles import BASE_TILE, GEM, GROUND, HAZARD, OBSTACLE, STUMP

CLEAR = {"biome": "grassland", "time_of_day": "noon", "weather": "clear"}


def rollout(env, seed, actions, options=None):
    frames = [env.reset(seed=seed, options=options)[0]]
    for a in actions:
        obs, _, terminated, _, _ = env.step(a)
        frames.append(obs)
        if terminated:
            break
    return np.stack(frames)


@pytest.mark.parametrize("resolution", [64, 128, 256])
def test_same_seed_and_actions_give_identical_frames(resolution):
    actions = np.random.default_rng(1).integers(0, 6, 200).tolist()
    a = rollout(TeacherEnv(resolution=resolution), 7, actions)
    b = rollout(TeacherEnv(resolution=resolution), 7, actions)
    assert a.shape[1:] == (resolution, resolution, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    c = rollout(TeacherEnv(resolution=resolution), 8, actions)
    assert not np.array_equal(a[0], c[0]), "another seed should be another world"


def test_consecutive_frames_scroll_smoothly():
    env = TeacherEnv(style=CLEAR)
    prev, info = env.reset(seed=3)
    shifts = []
    for action in [RIGHT] * 12 + [DOWN] * 12:
        obs, _, _, _, new_info = env.step(action)
        dx = new_info["position"][0] - info["position"][0]
        dy = new_info["position"][1] - info["position"][1]
        if (dx, dy) != (0, 0):  # the camera moved 2 pixels: old and new frames overlap
            a = obs[max(0, -dy) : 64 - max(0, dy), max(0, -dx) : 64 - max(0, dx)].astype(int)
            b = prev[max(0, dy) : 64 - max(0, -dy), max(0, dx) : 64 - max(0, -dx)].astype(int)
            shifts.append(np.abs(a - b).mean())
        prev, info = obs, new_info
    assert len(shifts) >= 8
    assert max(shifts) < 3.0  # only the centred player sprite differs


def _moves(seq):
    return [a for a, n in seq for _ in range(n)]


def test_a_place_renders_the_same_whatever_path_led_there():
    compared = 0
    for seed in range(40):
        env_a, env_b = TeacherEnv(style=CLEAR), TeacherEnv(style=CLEAR)
        path_a = _moves([(RIGHT, 24), (DOWN, 24)])
        path_b = _moves([(DOWN, 24), (RIGHT, 24), (UP, 4), (DOWN, 4)])  # ends facing DOWN too
        env_a.reset(seed=seed)
        env_b.reset(seed=seed)
        start = env_a.x, env_a.y
        ok = True
        for env, path in ((env_a, path_a), (env_b, path_b)):
            for act in path:
                _, r, term, _, _ = env.step(act)
                ok &= r == 0 and not term
        if not ok or (env_a.x, env_a.y) != (start[0] + 48, start[1] + 48) or (env_b.x, env_b.y) != (env_a.x, env_a.y):
            continue  # blocked, a gem or a hazard on one path: try another world
        assert np.array_equal(env_a.render(), env_b.render()), f"seed {seed}"
        compared += 1
    assert compared >= 3


def test_far_coordinates_work_and_revisit():
    env = TeacherEnv(style=CLEAR)
    far = (1_000_000 * BASE_TILE, -1_000_000 * BASE_TILE)
    obs, info = env.reset(seed=0, options={"position": far})
    assert abs(info["tile"][0] - 1_000_000) < 64 and abs(info["tile"][1] + 1_000_000) < 64
    assert obs.std() > 5  # a real landscape, not a blank frame
    # Leave by teleporting to the other side of the world and come back: the same place.
    tm = env.tilemap
    before = tm.block(info["tile"][0] - 4, info["tile"][1] - 4, 9, 9).copy()
    tm.block(-999_999, 999_999, 9, 9)
    assert np.array_equal(tm.block(info["tile"][0] - 4, info["tile"][1] - 4, 9, 9), before)
    with pytest.raises(ValueError, match="outside the world"):
        env.reset(options={"position": (10**16, 0)})


def _find_row(tm, start, want, free):
    """A tile of class `want` with `free` ground tiles to its left (x decreasing), near start."""
    x0, y0 = start
    for dy in range(-40, 41):
        row = tm.block(x0 - 60, y0 + dy, 120, 1)[0] // 4
        for i in range(free, 120):
            if row[i] == want and np.all(row[i - free : i] == GROUND):
                return x0 - 60 + i, y0 + dy
    return None


@pytest.mark.parametrize("seed", [11])
def test_collected_gems_stay_gone_after_a_revisit(seed):
    env = TeacherEnv(style=CLEAR)
    _, info = env.reset(seed=seed)
    gem = _find_row(env.tilemap, info["tile"], GEM, free=12)
    assert gem is not None
    _, info = env.reset(seed=seed, options={"position": ((gem[0] - 10) * BASE_TILE + 4, gem[1] * BASE_TILE + 4)})
    assert info["tile"] == (gem[0] - 10, gem[1])
    rewards = [env.step(RIGHT)[1] for _ in range(40)]  # 10 tiles: onto the gem's centre
    assert sum(rewards) == 1.0 and env.tilemap.cls(*gem) == GROUND
    here = env.render()
    for _ in range(40):  # leave along the free row and come back, facing right again
        env.step(LEFT)
    for _ in range(40):
        _, r, *_ = env.step(RIGHT)
        assert r == 0.0, "a collected gem must not pay twice"
    assert np.array_equal(env.render(), here)


def test_chopping_persists_and_survives_chunk_eviction():
    env = TeacherEnv(style=CLEAR)
    _, info = env.reset(seed=4)
    tree = _find_row(env.tilemap, info["tile"], OBSTACLE, free=3)
    assert tree is not None
    env.reset(seed=4, options={"position": ((tree[0] - 1) * BASE_TILE + 4, tree[1] * BASE_TILE + 4)})
    env.tilemap.max_chunks = 4  # force the chunk cache to forget
    _, _, _, _, _ = env.step(RIGHT)  # face the tree (blocked: the position stays)
    env.step(USE)
    assert env.tilemap.cls(*tree) == STUMP
    # Visit many other chunks, evicting the edited one, then look again.
    for k in range(10):
        env.tilemap.block(tree[0] + (k + 1) * CHUNK * 3, tree[1], 4, 4)
    assert (tree[0] // CHUNK, tree[1] // CHUNK) not in env.tilemap._chunks
    assert env.tilemap.cls(*tree) == STUMP
    env.step(USE)  # USE on a stump places a crate, and again removes it
    assert env.tilemap.cls(*tree) != STUMP


def test_tilemap_is_a_pure_function_of_seed_and_coordinates():
    a, b = TileMap(123), TileMap(123)
    block_a = a.block(-20, -20, 50, 50)
    for y in range(-20, 30, 7):  # b reads the same tiles piecewise, in another order
        for x in range(29, -21, -9):
            assert b.code(x, y) == block_a[y + 20, x + 20]
    assert not np.array_equal(TileMap(124).block(-20, -20, 50, 50), block_a)


def test_hazard_ends_the_episode():
    env = TeacherEnv(style=CLEAR)
    _, info = env.reset(seed=6)
    lake = _find_row(env.tilemap, info["tile"], HAZARD, free=2)
    assert lake is not None
    env.reset(seed=6, options={"position": ((lake[0] - 1) * BASE_TILE + 4, lake[1] * BASE_TILE + 4)})
    assert not env.leads_to_hazard(LEFT)
    ended = []
    for _ in range(4):  # 2 px a frame: the centre crosses into the hazard tile on the 2nd step
        assert env.leads_to_hazard(RIGHT) == (len(ended) == 1)
        ended.append(env.step(RIGHT)[2])
        if ended[-1]:
            break
    assert ended == [False, True]


def test_style_switch_changes_the_look_not_the_layout():
    env = TeacherEnv(style=CLEAR)
    obs0, _ = env.reset(seed=2)
    layout = env.tilemap.block(env.x // 8 - 4, env.y // 8 - 4, 9, 9).copy()
    env.set_style("volcanic land at night")
    frames = [env.step(NOOP)[0] for _ in range(12)]
    assert env.style == Style("volcanic", "night", "clear")
    dist = [np.abs(f.astype(int) - frames[-1].astype(int)).mean() for f in frames]
    assert dist[0] > dist[4] > dist[-1] == 0, "a short cross-fade, then the new style"
    assert np.array_equal(env.tilemap.block(env.x // 8 - 4, env.y // 8 - 4, 9, 9), layout)
    assert env.step(NOOP)[-1]["style"]["biome"] == "volcanic"


def test_weather_is_deterministic_and_animated():
    rain = {**CLEAR, "weather": "rain"}
    a = rollout(TeacherEnv(style=rain), 5, [NOOP] * 10)
    b = rollout(TeacherEnv(style=rain), 5, [NOOP] * 10)
    assert np.array_equal(a, b)
    assert not np.array_equal(a[1], a[2]), "rain falls even when the player stands still"
    clear = rollout(TeacherEnv(style=CLEAR), 5, [NOOP] * 10)
    assert np.array_equal(clear[1], clear[2])


def test_captions_vary_and_parse_back():
    rng = np.random.default_rng(0)
    style = Style("desert", "dusk", "fog")
    seen = {caption(style, rng) for _ in range(200)}
    assert len(seen) > 20
    train, heldout = set(all_captions(style)), set(all_captions(style, heldout=True))
    assert seen <= train and not train & heldout
    for biome in BIOMES:
        for tod in TIMES_OF_DAY:
            for weather in WEATHERS:
                s = Style(biome, tod, weather)
                for text in all_captions(s)[::17] + all_captions(s, heldout=True)[::5]:
                    assert parse_prompt(text) == s, text


def test_prompt_parsing_keeps_unnamed_fields_and_rejects_nonsense():
    base = Style("forest", "dawn", "rain")
    assert parse_prompt("night", default=base) == Style("forest", "night", "rain")
    assert parse_prompt("", default=base) == base
    assert parse_prompt("frozen tundra in a blizzard") == Style("snow", "noon", "snow")
    assert parse_prompt("a snowy forest at night") == Style("forest", "night", "snow")
    with pytest.raises(ValueError, match="biomes: grassland"):
        parse_prompt("a purple spaceship")


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"style": {"biome": "moon"}}, "unknown biome 'moon'; valid choices: grassland"),
        ({"style": {"colour": "red"}}, "unknown style keys"),
        ({"style": ["forest"]}, "must be a dict"),
        ({"prompt": "xyzzy"}, "names no biome"),
        ({"prompt": "forest", "style": CLEAR}, "not both"),
        ({"speed": 3}, "unknown reset options"),
        ({"position": "here"}, "two integers"),
    ],
)
def test_bad_options_get_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        TeacherEnv().reset(seed=0, options=bad)


@pytest.mark.parametrize("action", [6, -1, 1.5, "UP", None, True, np.array([1, 2])])
def test_invalid_actions_are_rejected(action):
    env = TeacherEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"invalid action .* 0 NOOP, 1 UP"):
        env.step(action)


def test_numpy_integer_actions_are_accepted():
    env = TeacherEnv()
    env.reset(seed=0)
    env.step(np.int64(RIGHT))
    env.step(np.array(LEFT))


def test_bad_construction():
    with pytest.raises(ValueError, match=r"unsupported resolution 100; choose one of \(64, 128, 256\)"):
        TeacherEnv(resolution=100)
    with pytest.raises(ValueError, match="render_mode"):
        TeacherEnv(render_mode="ansi")
    with pytest.raises(RuntimeError, match="reset"):
        TeacherEnv().step(0)


@pytest.mark.parametrize("resolution", [64, 128])
def test_check_env_passes(resolution):
    env = gym.make("envs:EchoInfinity/Teacher-v0", resolution=resolution)
    check_env(env.unwrapped)
    assert env.spec.max_episode_steps == 1000
    assert env.unwrapped.get_action_meanings() == ["NOOP", "UP", "DOWN", "LEFT", "RIGHT", "USE"]


def test_info_and_rgb_array_render():
    env = gym.make("EchoInfinity/Teacher-v0", render_mode="rgb_array")
    obs, info = env.reset(seed=0, options={"prompt": "swamp at dusk"})
    assert set(info) >= {"position", "tile", "style", "caption", "frame", "gems"}
    assert info["style"]["biome"] == "swamp" and info["style"]["time_of_day"] == "dusk"
    assert np.array_equal(env.render(), obs)
    env.close()
    env.close()  # safe twice


def test_registration_is_on_import():
    assert envs.TEACHER_ID in gym.registry


def test_tile_mode_moves_one_token_and_aligns_tiles_to_tokens():
    from envs.teacher import player_origin

    env = TeacherEnv(style=CLEAR, motion="tile")
    frame, info = env.reset(seed=3)
    assert player_origin(64, "tile") == (32, 32) and player_origin(64, "smooth") == (28, 28)
    moved = 0
    for a in (RIGHT, RIGHT, DOWN, LEFT, UP) * 4:
        blocked = env.blocks(a)
        nxt, _, terminated, _, new = env.step(a)
        if terminated:
            break
        dx, dy = new["position"][0] - info["position"][0], new["position"][1] - info["position"][1]
        assert (dx, dy) == (0, 0) if blocked else abs(dx) + abs(dy) == BASE_TILE
        if not blocked:  # the view shifted by exactly one tile: everything but the new edge and the player
            moved += 1
            ox, oy = dx, dy
            a_ = frame[max(oy, 0):64 + min(oy, 0), max(ox, 0):64 + min(ox, 0)].astype(int)
            b_ = nxt[max(-oy, 0):64 + min(-oy, 0), max(-ox, 0):64 + min(-ox, 0)].astype(int)
            diff = np.abs(a_ - b_).max(-1)
            keep = np.ones_like(diff, bool)
            for y, x in ((32 - max(-oy, 0), 32 - max(-ox, 0)), (32 - max(oy, 0), 32 - max(ox, 0))):
                keep[max(y, 0):y + 8, max(x, 0):x + 8] = False  # the player's tile, old and new
            assert diff[keep].max() == 0
        frame, info = nxt, new
    assert moved >= 5


def test_tile_mode_rejects_unknown_motion():
    with pytest.raises(ValueError, match="motion"):
        TeacherEnv(motion="teleport")
