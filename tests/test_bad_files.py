"""Every kind of file a user hands over, broken the usual ways: one clear error, nothing changed.

Each case crafts a bad file from a good one and checks that the Python API
raises the documented type (all ValueErrors) with a message naming the file,
and that the command line prints one line, no traceback, and exits 2.
Loading never unpickles: the pickles here are bytes written, never read.
"""
from __future__ import annotations

import json
import logging
import shutil
import warnings
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import envs  # noqa: F401  (registers EchoInfinity/World-v0)
from demos.kiosk_config import ConfigError, load_config
from engines.registry import make_backend
from engines.onnx_export import FILES, MANIFEST, FORMAT, ManifestError, model_hash
from envs.biome_classifier import ClassifierConfig, load_or_train
from envs.record import record_episodes
from envs.shards import ShardError, list_shards, load_episode, read_manifest
from demos import cli
from runtime.recorder import ReplayError, SessionRecorder, replay
from runtime.session import Session
from runtime.snapshot import SnapshotError
from world import CheckpointError
from world.config import from_preset
from world.model import WorldModel
from world.train import Trainer, TrainConfig

PICKLE = b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s."  # pickle.dumps({"a": 1})


def _cut(fraction: float):
    return lambda p: p.write_bytes(p.read_bytes()[: int(p.stat().st_size * fraction)])


def _bytes(data: bytes):
    return lambda p: p.write_bytes(data)


def _zip(p: Path) -> None:  # what torch.save writes: a zip holding a pickle
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("archive/data.pkl", PICKLE)


def _tensors(edit):
    """Rewrite a safetensors file with edit(tensors) applied to its first matrix."""
    def apply(p: Path) -> None:
        t = load_file(str(p))
        k = next(k for k in sorted(t) if t[k].dim() >= 2)
        save_file(edit(dict(t), k), str(p))
    return apply


def _set(value):
    def edit(t, k):
        t[k] = t[k].clone()
        t[k][0, 0] = value
        return t
    return edit


# name, the file broken, how, what the message says
BAD_WEIGHTS = [
    ("truncated", "model.safetensors", _cut(0.5), r"is truncated: \d+ bytes of the \d+ its header describes"),
    ("truncated header", "model.safetensors", _cut(0.0005), r"is truncated: its header alone needs \d+ bytes"),
    ("empty", "model.safetensors", _bytes(b""), r"is empty \(0 bytes\)"),
    ("garbage", "model.safetensors", _bytes(b"certainly not tensors " * 8),
     "is not a safetensors file: it starts with"),
    ("pickle renamed", "model.safetensors", _bytes(PICKLE),
     "is not a safetensors file: it is a serialized Python object"),
    ("torch.save zip renamed", "model.safetensors", _zip, "is not a safetensors file: it is a zip archive"),
    ("damaged header", "model.safetensors", _bytes((16).to_bytes(8, "little") + b'{"w": [1, 2, 3]}'),
     "damaged safetensors header"),
    ("wrong shape", "model.safetensors", _tensors(lambda t, k: {**t, k: t[k][:, :-1].contiguous()}),
     r"shape mismatch \(1\)"),
    ("wrong dtype", "model.safetensors", _tensors(lambda t, k: {**t, k: t[k].half()}),
     r"dtype mismatch \(1\).*float16"),
    ("missing tensor", "model.safetensors", _tensors(lambda t, k: {n: v for n, v in t.items() if n != k}),
     r"missing \(1\)"),
    ("extra tensor", "model.safetensors", _tensors(lambda t, k: {**t, "dit.spare": torch.zeros(2)}),
     r"unexpected \(1\).*dit.spare"),
    ("NaN weights", "model.safetensors", _tensors(_set(float("nan"))), "holds NaN/Inf values in 1 tensor"),
    ("Inf weights", "model.safetensors", _tensors(_set(float("inf"))), "holds NaN/Inf values in 1 tensor"),
    ("config not JSON", "config.json", _bytes(b"{not json"), r"bad .*config\.json: Expecting"),
    ("config bad field", "config.json", _bytes(b'{"dit": {"dimm": 3}}'), r"bad .*config\.json: .*dit\.dimm"),
]
WEIGHT_IDS = [c[0] for c in BAD_WEIGHTS]


def _bad_checkpoint(ckpt: Path, tmp_path: Path, file: str, breaks) -> Path:
    """A copy of the test checkpoint with `file` broken by `breaks`."""
    d = tmp_path / "ck"
    shutil.copytree(ckpt, d)
    breaks(d / file)
    return d


def _one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_the_error_types_are_value_errors():
    for kind in (CheckpointError, SnapshotError, ManifestError, ShardError, ConfigError, ReplayError):
        assert issubclass(kind, ValueError)


@pytest.mark.parametrize("name, file, breaks, message", BAD_WEIGHTS, ids=WEIGHT_IDS)
def test_a_bad_checkpoint_is_one_checkpoint_error(ckpt, tmp_path, name, file, breaks, message):
    d = _bad_checkpoint(ckpt, tmp_path, file, breaks)
    for load in (lambda: WorldModel.load(d), lambda: Session(d, text_encoder="hash"),
                 lambda: gym.make("EchoInfinity/World-v0", checkpoint=str(d), text_encoder="hash")):
        with pytest.raises(CheckpointError, match=message) as e:
            load()
        assert str(d / file) in str(e.value)


@pytest.mark.parametrize("name, file, breaks, message", BAD_WEIGHTS, ids=WEIGHT_IDS)
def test_a_bad_checkpoint_exits_2_from_the_cli(ckpt, tmp_path, capsys, name, file, breaks, message):
    d = _bad_checkpoint(ckpt, tmp_path, file, breaks)
    named = d / file
    play = ["play", "--headless", "--frames", "1", "--text-encoder", "hash", "--checkpoint", str(d)]
    assert cli.main(play) == 2
    _one_line(capsys.readouterr().err, "echo-infinity play:", str(named))
    assert cli.main(["export", "--checkpoint", str(d), "--out", str(tmp_path / "onnx")]) == 2
    _one_line(capsys.readouterr().err, "echo-infinity export: error:", str(named))
    assert not (tmp_path / "onnx").exists()  # nothing written


def test_bad_weights_leave_a_loaded_model_unchanged(ckpt):
    model = WorldModel.load(ckpt)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    k = next(k for k in sorted(before) if before[k].dim() >= 2)
    bad = [{**before, k: before[k] * float("nan")}, {**before, k: before[k][:, :-1]},
           {**before, k: before[k].double()}, {n: v for n, v in before.items() if n != k}]
    for tensors in bad:
        with pytest.raises(CheckpointError, match="live weights"):
            model.load_weights({n: v.clone() for n, v in tensors.items()}, source="live weights")
        assert all(torch.equal(v, model.state_dict()[n]) for n, v in before.items())


# -- session logs (SessionRecorder -> replay) -------------------------------------------------

def _log_edit(edit):
    def apply(p: Path) -> None:
        log = json.loads(p.read_text())
        edit(log)
        p.write_text(json.dumps(log))
    return apply


BAD_LOGS = [
    ("missing", lambda p: p.unlink(), "no such session log"),
    ("truncated", _cut(0.5), "unreadable JSON"),
    ("pickle renamed", _bytes(PICKLE), "unreadable JSON"),
    ("a list", _bytes(b"[1, 2]"), "a JSON list, not an object"),
    ("no frames", _log_edit(lambda log: log.pop("frames")), "'frames' missing"),
    ("seed a string", _log_edit(lambda log: log.update(seed="4")), "'seed' missing or not a int"),
    ("action a float", _log_edit(lambda log: log["frames"][2].update(action=1.5)), "frame entry 2 needs int"),
    ("no reset first", _log_edit(lambda log: log["frames"].pop(0)), "first frame entry is not the reset"),
    ("event without text", _log_edit(lambda log: log["events"][0].pop("text")), "prompt event"),
    ("another checkpoint", _log_edit(lambda log: log.update(checkpoint_hash="0" * 64)), "was recorded on checkpoint 000000"),
    ("start frame gone", _log_edit(lambda log: log.update(start_frame="gone.start.npy")), "start frame cannot be read"),
]


@pytest.mark.parametrize("name, breaks, message", BAD_LOGS, ids=[c[0] for c in BAD_LOGS])
def test_a_bad_session_log_is_a_replay_error_before_any_step(ckpt, tmp_path, name, breaks, message):
    s = Session(ckpt, text_encoder="hash")
    rec = SessionRecorder(s, tmp_path / "run.mp4", seed=4, prompt="desert")
    for a in (1, 2, 3):
        rec.step(a)
    rec.set_prompt("swamp")
    log = rec.close()
    breaks(log)
    other = Session(ckpt, text_encoder="hash")
    with pytest.raises(ReplayError, match=message) as e:
        replay(log, other)
    assert str(log.name) in str(e.value) or "start" in name
    assert other.state is None  # nothing was stepped


# -- snapshots ------------------------------------------------------------------------------

BAD_SNAPSHOTS = [
    ("truncated", _cut(0.5), "truncated or damaged"),
    ("empty", _bytes(b""), "not an Echo-Infinity snapshot"),
    ("garbage", _bytes(b"certainly not a world " * 8), "not an Echo-Infinity snapshot"),
    ("pickle renamed", _bytes(PICKLE), "not an Echo-Infinity snapshot"),
    ("model weights renamed", None, "without a snapshot header"),
]


@pytest.mark.parametrize("name, breaks, message", BAD_SNAPSHOTS, ids=[c[0] for c in BAD_SNAPSHOTS])
def test_a_bad_snapshot_is_a_snapshot_error_and_changes_nothing(ckpt, tmp_path, name, breaks, message):
    s = Session(ckpt, text_encoder="hash")
    s.reset(seed=1, prompt="forest")
    s.step(1)
    path = s.save(tmp_path / "world.safetensors")
    if breaks is None:
        shutil.copy(ckpt / "model.safetensors", path)
    else:
        breaks(path)
    before = s.snapshot()
    with pytest.raises(SnapshotError, match=message) as e:
        s.load(path)
    assert str(path) in str(e.value)
    assert all(torch.equal(v, s.snapshot()[k]) for k, v in before.items())


# -- ONNX exports ---------------------------------------------------------------------------


def _export_dir(model: WorldModel, d: Path) -> dict:
    """A manifest that matches `model` (hash, config, batch 1) over garbage graph files."""
    d.mkdir()
    graphs = {}
    for name, file in FILES.items():
        (d / file).write_bytes(b"not an onnx graph")
        graphs[name] = {"file": file, "inputs": {}, "outputs": {}}
    manifest = {"format": FORMAT, "model_hash": model_hash(model), "config": model.cfg.to_dict(), "batch": 1,
                "graphs": graphs}
    (d / MANIFEST).write_text(json.dumps(manifest))
    return manifest


def _write_json(path: Path, value) -> None:
    """`value` as JSON, or a str as it is (a file that is not JSON)."""
    path.write_text(value if isinstance(value, str) else json.dumps(value))


def _edit_manifest(edit):
    return lambda d, m: _write_json(d / MANIFEST, edit(m))


def _spec(manifest: dict, graph: str, tensor: str, io: str = "inputs", **fields) -> dict:
    manifest["graphs"][graph][io][tensor] = {"shape": [1, 64], "dtype": "float32", **fields}
    return manifest


BAD_EXPORTS = [
    ("manifest not JSON", _edit_manifest(lambda m: "{not json"), r"bad .*manifest\.json: Expecting"),
    ("manifest a list", _edit_manifest(lambda m: [m]), r"bad .*manifest\.json: expected a JSON object"),
    ("manifest without graphs", _edit_manifest(lambda m: {**m, "graphs": {}}), r"'graphs' must give"),
    ("input shape not a list", _edit_manifest(lambda m: _spec(m, "dit_step", "x", shape="1x1")),
     r"graphs\.dit_step\.inputs\.x must be"),
    ("output dtype unknown", _edit_manifest(lambda m: _spec(m, "decoder", "pixels", dtype="complex64", io="outputs")),
     r"graphs\.decoder\.outputs\.pixels must be"),
    ("graph file missing", lambda d, m: (d / FILES["decoder"]).unlink(), r"decoder\.onnx is missing"),
    ("graph file garbage", lambda d, m: None, r"dit_context\.onnx is not a loadable ONNX graph"),
]


@pytest.mark.parametrize("name, breaks, message", BAD_EXPORTS, ids=[c[0] for c in BAD_EXPORTS])
def test_a_bad_onnx_export_is_a_manifest_error(ckpt, tmp_path, capsys, name, breaks, message):
    pytest.importorskip("onnxruntime")
    model = WorldModel.load(ckpt)
    d = tmp_path / "onnx"
    breaks(d, _export_dir(model, d))
    with pytest.raises(ManifestError, match=message) as e:
        make_backend("onnxruntime", model, 1, cache_dir=d, warn=pytest.fail)  # an error, not a fallback
    assert str(d) in str(e.value)
    argv = ["bench", "--target", "backends", "--backends", "onnxruntime", "--checkpoint", str(ckpt),
            "--cache-dir", str(d), "--frames", "1", "--policy", model.cfg.memory.policy, "--no-progress"]
    assert cli.main(argv) == 2
    _one_line(capsys.readouterr().err, "echo-infinity bench: error:", str(d))


# -- the kiosk's TOML -----------------------------------------------------------------------

BAD_TOML = [
    ("not TOML", "[world\n", "not valid TOML"),
    ("not UTF-8", b"\xff\xfe[world]\n", "cannot read it"),
    ("unknown key", "[world]\nfsp = 20\n", "unknown key world.fsp"),
    ("wrong type", "[world]\nseed = 'one'\n", "world.seed: must be an integer"),
    ("missing", None, "no such file"),
]


@pytest.mark.parametrize("name, text, message", BAD_TOML, ids=[c[0] for c in BAD_TOML])
def test_a_bad_kiosk_toml_is_a_config_error(tmp_path, capsys, name, text, message):
    path = tmp_path / "kiosk.toml"
    if text is not None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=message) as e:
        load_config(path)
    assert str(path) in str(e.value)
    assert cli.main(["kiosk", "--config", str(path), "--check"]) == 2
    _one_line(capsys.readouterr().err, "echo-infinity kiosk:", str(path), message)


def test_a_kiosk_on_a_bad_checkpoint_exits_2(ckpt, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # restored after the test (the kiosk sets it when headless)
    d = _bad_checkpoint(ckpt, tmp_path, "model.safetensors", _cut(0.5))
    named = d / "model.safetensors"
    path = tmp_path / "kiosk.toml"
    path.write_text(f"[world]\nsource = 'model'\ncheckpoint = '{d}'\ntext_encoder = 'hash'\n"
                    f"[log]\nfile = '{tmp_path / 'kiosk.log'}'\n")
    try:
        assert cli.main(["kiosk", "--config", str(path), "--headless", "--frames", "1"]) == 2
    finally:
        root = logging.getLogger("echo_infinity")
        for h in [h for h in root.handlers if getattr(h, "_kiosk", False)]:
            root.removeHandler(h)
            h.close()
    _one_line(capsys.readouterr().err, "echo-infinity kiosk:", str(named), "is truncated")


# -- recorded shards and their manifest -----------------------------------------------------


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rec") / "data"
    motion = from_preset("tiny").game.motion  # as the model trained on it moves (train checks it)
    record_episodes("teacher", "random", episodes=2, steps=6, out_dir=out, seed=0, progress=False, motion=motion)
    return out


def _shard(breaks):
    return lambda d: breaks(list_shards(d)[0])


def _data_manifest(text: str):
    return lambda d: (d / "manifest.json").write_text(text)


BAD_SHARDS = [
    ("truncated shard", _shard(_cut(0.5)), "corrupt or not a shard"),
    ("garbage shard", _shard(_bytes(b"certainly not frames " * 8)), "corrupt or not a shard"),
    ("safetensors renamed", _shard(lambda p: save_file({"x": torch.zeros(2)}, str(p))), "corrupt or not a shard"),
    ("manifest not JSON", _data_manifest("{not json"), "manifest is not valid JSON"),
    ("manifest a list", _data_manifest("[]"), "manifest must be a JSON object"),
]


@pytest.mark.parametrize("name, breaks, message", BAD_SHARDS, ids=[c[0] for c in BAD_SHARDS])
def test_a_bad_recording_is_a_shard_error(recording, tmp_path, capsys, name, breaks, message):
    d = tmp_path / "data"
    shutil.copytree(recording, d)
    breaks(d)
    with pytest.raises(ShardError, match=message) as e:
        read_manifest(d)
        for shard in list_shards(d):
            load_episode(shard)
    assert str(d) in str(e.value)
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(d), "--out", str(out), "--text-encoder", "hash", "--no-progress"]) == 2
    _one_line(capsys.readouterr().err, "echo-infinity train: error:", str(d), message)
    assert not out.exists()  # failed before training started


@pytest.mark.parametrize("text, message", [("{not json", "is not valid JSON"), ("[1]", "must hold a JSON object")])
def test_a_bad_train_config_json_exits_2(recording, tmp_path, capsys, text, message):
    path = tmp_path / "train.json"
    path.write_text(text)
    out = tmp_path / "run"
    assert cli.main(["train", "--data", str(recording), "--config", str(path), "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "echo-infinity train: error:", str(path), message)
    assert not out.exists()


@pytest.mark.parametrize("text, message", [("{not json", "not valid JSON"), ("[1]", "must be a JSON object")])
def test_a_bad_train_model_json_exits_2(recording, tmp_path, capsys, text, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:  # argparse's own usage error
        cli.main(["train", "--data", str(recording), "--model", text, "--out", str(out)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--model" in err and message in err
    assert not out.exists()


# -- train resume files ---------------------------------------------------------------------


def _stage1_params(trainer: Trainer) -> list:
    return [p for n, p in trainer.model.named_parameters() if not n.startswith("tokenizer.")]  # as stage_dit


def _run_dir(tmp_path: Path) -> tuple[TrainConfig, Path]:
    """A run stopped at the start of stage 1 with an optimizer state, as `Trainer.save` writes it."""
    cfg = TrainConfig(out=str(tmp_path / "run"), text_encoder="hash")
    trainer = Trainer(cfg, batches=None, progress=False)
    params = _stage1_params(trainer)
    opt = trainer._optimizer(params, 1e-3, "stage1", None)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()  # AdamW now holds exp_avg/exp_avg_sq of every parameter
    trainer.done.update(tokenizer=cfg.tok_steps)
    trainer.latent_std = 1.0
    trainer.save("stage1", opt)
    return cfg, Path(cfg.out)


def _trainer_json(edit):
    return lambda run: _write_json(run / "trainer.json", edit(json.loads((run / "trainer.json").read_text())))


def _exp_avg(edit):
    def apply(run: Path) -> None:
        t = load_file(str(run / "optimizer.safetensors"))
        t["0.exp_avg"] = edit(t["0.exp_avg"])
        save_file(t, str(run / "optimizer.safetensors"))
    return apply


def _file(name: str, breaks):
    return lambda run: breaks(run / name)


BAD_RESUMES = [  # name, how the run is broken, the file named, the message
    ("trainer.json not JSON", _trainer_json(lambda m: "{not json"), "trainer.json",
     "cannot resume from .*JSONDecodeError"),
    ("trainer.json without done", _trainer_json(lambda m: {**m, "done": None}), "trainer.json", "cannot resume from"),
    ("trainer.json bad rng", _trainer_json(lambda m: {**m, "rng": [1, 2, 3]}), "trainer.json",
     "cannot resume from .*RuntimeError"),
    ("model truncated", _file("model.safetensors", _cut(0.5)), "model.safetensors", "is truncated"),
    ("model NaN", _file("model.safetensors", _tensors(_set(float("nan")))), "model.safetensors", "NaN/Inf"),
    ("optimizer truncated", _file("optimizer.safetensors", _cut(0.5)), "optimizer.safetensors", "is truncated"),
    ("optimizer pickle", _file("optimizer.safetensors", _bytes(PICKLE)), "optimizer.safetensors",
     "serialized Python object"),
    ("optimizer wrong shape", _exp_avg(lambda t: t.reshape(-1)[:-1].clone()), "optimizer.safetensors", "exp_avg of a"),
    ("optimizer NaN", _exp_avg(lambda t: t * float("nan")), "optimizer.safetensors", "NaN/Inf"),
]


@pytest.mark.parametrize("name, breaks, named, message", BAD_RESUMES, ids=[c[0] for c in BAD_RESUMES])
def test_a_bad_resume_file_is_a_checkpoint_error(recording, tmp_path, capsys, name, breaks, named, message):
    cfg, run = _run_dir(tmp_path)
    breaks(run)
    trainer = Trainer(cfg, batches=None, progress=False)
    model, done = trainer.model, dict(trainer.done)
    with pytest.raises(CheckpointError, match=message) as e:
        meta = trainer.try_resume()
        trainer._optimizer(_stage1_params(trainer), 1e-3, "stage1", meta)
    assert str(run / named) in str(e.value)
    if named != "optimizer.safetensors":  # a failed resume changed nothing
        assert trainer.model is model and trainer.done == done
    argv = ["train", "--data", str(recording), "--out", str(run), "--text-encoder", "hash", "--no-progress"]
    assert cli.main(argv) == 2
    _one_line(capsys.readouterr().err, "echo-infinity train: error:", str(run / named))


# -- the evaluation's classifier cache: only a cache, so it is rebuilt -------------------------


def test_a_corrupt_classifier_cache_is_rebuilt_with_a_warning(tmp_path):
    cfg = ClassifierConfig(train_episodes=6, heldout_episodes=6, frames_per_episode=1, width=4, epochs=1)
    path = tmp_path / f"biome_classifier_{cfg.key()}.safetensors"
    path.write_bytes(PICKLE)
    with pytest.warns(UserWarning, match=r"cached biome classifier is unusable .*serialized Python object"):
        clf = load_or_train(cfg, tmp_path)
    assert load_file(str(path)).keys() == clf.net.state_dict().keys()  # overwritten with a good one
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache reads back without a warning
        again = load_or_train(cfg, tmp_path)
    frames = np.zeros((2, 64, 64, 3), np.uint8)
    assert (again.predict(frames) == clf.predict(frames)).all()


# -- the text encoder's bundled weights ------------------------------------------------------


def test_a_bad_text_encoder_directory_is_a_checkpoint_error(tmp_path):
    from world.text import TextEncoder, minilm_path

    good = minilm_path()
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).symlink_to(good / name)
    (tmp_path / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is truncated"):
        TextEncoder(tmp_path)
    (tmp_path / "config.json").unlink()
    (tmp_path / "config.json").write_text('{"hidden_size": 384}')
    with pytest.raises(CheckpointError, match=r"bad .*config\.json: KeyError"):
        TextEncoder(tmp_path)
