"""ClipDataset streams the right clips from shards; corrupt shards fail clearly."""

import zipfile

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from envs.dataset import ClipDataset, ShardError, collate_clips, load_episode, write_episode
from envs.record import record_episodes

L = 8


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("clips")
    record_episodes("teacher", "explore", episodes=4, steps=40, out_dir=out, seed=1, progress=False,
                    style_switch_prob=0.05)
    return out


def _keys(items):
    return [(it["episode"], int(it["start"])) for it in items]


def test_clips_have_documented_shapes_and_match_the_shards(data):
    items = list(ClipDataset(data, clip_len=L, seed=0))
    assert len({it["episode"] for it in items}) >= 3, "clips should come from several shards"
    for it in items[:10]:
        assert it["frames"].shape == (L, 64, 64, 3) and it["frames"].dtype == torch.uint8
        assert it["actions"].shape == (L,) and it["actions"].dtype == torch.int64
        assert it["rewards"].dtype == torch.float32 and it["terminated"].dtype == torch.bool
        assert it["positions"].shape == (L, 2) and len(it["captions"]) == L
        ep, s = load_episode(it["episode"]), it["start"]
        np.testing.assert_array_equal(it["frames"].numpy(), ep.frames[s:s + L])
        np.testing.assert_array_equal(it["actions"].numpy(), ep.actions[s:s + L])
        assert it["captions"] == ep.captions[s:s + L]


def test_order_is_seeded_and_epochs_repeat(data):
    a = _keys(ClipDataset(data, clip_len=L, seed=5))
    assert a == _keys(ClipDataset(data, clip_len=L, seed=5))
    assert a != _keys(ClipDataset(data, clip_len=L, seed=6))
    two = _keys(ClipDataset(data, clip_len=L, seed=5, epochs=2))
    assert two[:len(a)] == a and len(two) > len(a)
    assert two[len(a):] != a, "the second epoch reshuffles"
    assert len(list(ClipDataset(data, clip_len=L, seed=5, shuffle=False))) == \
        ClipDataset(data, clip_len=L).num_clips()


def test_normalize_gives_floats_in_minus_one_one(data):
    it = next(iter(ClipDataset(data, clip_len=4, normalize=True)))
    assert it["frames"].dtype == torch.float32
    assert -1.0 <= it["frames"].min() and it["frames"].max() <= 1.0


def test_clips_reach_the_last_frame_where_an_episode_ends(tmp_path):
    from world.train import shift_actions

    record_episodes("teacher", "explore", episodes=4, steps=60, out_dir=tmp_path, seed=4, progress=False,
                    motion="tile", slip_prob=1.0)  # 3 of the 4 end on a hazard
    ended = [ep for ep in map(load_episode, sorted(tmp_path.glob("*.npz"))) if ep.terminated.any()]
    assert ended
    for stride in (1, 3, 7):
        ds = ClipDataset(tmp_path, clip_len=L, stride=stride, shuffle=False)
        items = list(ds)
        assert len(items) == ds.num_clips()
    last = [it for it in items if it["episode"] == ended[0].path and it["start"] == ended[0].length + 1 - L]
    assert len(last) == 1  # off the stride's grid, the end is still drawn
    np.testing.assert_array_equal(last[0]["frames"][-1].numpy(), ended[0].frames[-1])
    _, _, done_in = shift_actions(collate_clips(last), "cpu")
    assert done_in[0].tolist() == [0.0] * (L - 1) + [1.0]  # the end is the last frame's target


def test_too_short_episodes_give_no_clips(data):
    assert list(ClipDataset(data, clip_len=1000)) == []


def test_dataloader_workers_split_shards_without_duplicates(data):
    ds = ClipDataset(data, clip_len=L, shuffle=False)
    single = _keys(ds)
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_clips)
    keys = []
    for batch in loader:
        assert batch["frames"].shape[1:] == (L, 64, 64, 3) and len(batch["captions"][0]) == L
        keys += list(zip(batch["episode"], batch["start"].tolist()))
    assert sorted(keys) == sorted(single) and len(set(keys)) == len(keys)


def test_ranks_split_shards(data):
    parts = [{it["episode"] for it in ClipDataset(data, clip_len=L, rank=r, world_size=2)} for r in (0, 1)]
    assert parts[0] and parts[1] and not parts[0] & parts[1]


def _shard(data):
    return sorted(data.glob("episode_*.npz"))[0]


def test_truncated_shard_is_a_shard_error_naming_the_file(data, tmp_path):
    bad = tmp_path / "episode_000000.npz"
    bad.write_bytes(_shard(data).read_bytes()[:5000])
    with pytest.raises(ShardError, match="episode_000000.npz.*(corrupt|truncated|unreadable)"):
        load_episode(bad)
    with pytest.raises(ShardError, match="episode_000000.npz"):
        list(ClipDataset(tmp_path, clip_len=L))


def test_garbage_and_foreign_files_are_shard_errors(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(ShardError, match="junk.npz: corrupt"):
        load_episode(junk)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(ShardError, match="missing arrays"):
        load_episode(foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{k: np.array([{"a": 1}], dtype=object) for k in ("frames", "actions")})
    with pytest.raises(ShardError, match="pickled.npz"):
        load_episode(pickled)
    with pytest.raises(ShardError, match="no such shard"):
        load_episode(tmp_path / "missing.npz")
    with pytest.raises(ShardError, match="no shards"):
        ClipDataset(_empty(tmp_path), clip_len=4)


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_inconsistent_arrays_are_shard_errors(tmp_path):
    good = dict(frames=np.zeros((3, 8, 8, 3), np.uint8), actions=[0, 1], rewards=[0, 0],
                terminated=[0, 0], truncated=[0, 0], positions=np.zeros((3, 2)), captions=["a"] * 3,
                meta={})
    write_episode(tmp_path / "ok.npz", **good)
    assert load_episode(tmp_path / "ok.npz").length == 2
    with pytest.raises(ShardError, match="actions has shape"):
        write_episode(tmp_path / "bad.npz", **{**good, "actions": [0, 1, 2]})
    path = tmp_path / "edited.npz"
    with zipfile.ZipFile(tmp_path / "ok.npz") as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "meta.npy":
                np.save(tmp := tmp_path / "m.npy", np.array('{"format": "other", "version": 9}'))
                data = tmp.read_bytes()
            dst.writestr(name, data)
    with pytest.raises(ShardError, match="format 'other' version 9"):
        load_episode(path)


def test_mmap_frames_equal_loaded_frames_and_compressed_shards_load(data, tmp_path):
    path = _shard(data)
    full, mapped = load_episode(path), load_episode(path, mmap=True)
    assert isinstance(mapped.frames, np.memmap) and not isinstance(full.frames, np.memmap)
    np.testing.assert_array_equal(full.frames, mapped.frames)
    with np.load(path, allow_pickle=False) as z:
        np.savez_compressed(tmp_path / "episode_000000.npz", **{k: z[k] for k in z.files})
    packed = load_episode(tmp_path / "episode_000000.npz", mmap=True)
    np.testing.assert_array_equal(packed.frames, full.frames)
    assert len(list(ClipDataset(tmp_path, clip_len=L))) > 0
