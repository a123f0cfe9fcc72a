"""Training: all three stages run, resume exactly where they stopped, DDP keeps ranks in sync."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from envs.dataset import ClipDataset, clip_batches, list_shards, whole_episodes
from envs.record import record_episodes
from world.config import from_preset
from world.model import WorldModel
from world.prev_frame import copyable
from world.train import (RARITY_CAP, TrainConfig, Trainer, calibrate_latent_scale, flatten_optimizer,
                         fixed_change_weights, free_run_mask, head_losses, load_optimizer, rarity_weights, revisit_weights, shift_actions,
                         shift_head_loss)

# A model small enough to train a few steps per second on CPU, on real 64x64 teacher frames.
MICRO = {"tokenizer": {"channels": [8, 8], "patch_size": 4, "codebook_size": 32},
         "dit": {"dim": 32, "depth": 1, "heads": 2},
         "memory": {"window_frames": 4, "memory_tokens_per_frame": 4}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    record_episodes("teacher", "revisit", episodes=2, steps=80, out_dir=out, seed=3, progress=False)
    return [str(p) for p in list_shards(out)]


@pytest.fixture(scope="module")
def switching(tmp_path_factory):
    """Recordings whose style switches every ~20 frames (prompt-switch training)."""
    out = tmp_path_factory.mktemp("switching")
    record_episodes("teacher", "explore", episodes=2, steps=80, out_dir=out, seed=4, progress=False,
                    style_switch_prob=0.05)
    return [str(p) for p in list_shards(out)]


def batches_for(shards, seed=0):
    return clip_batches(shards, seed)


def small_config(out, **kw):
    base = dict(out=str(out), model=MICRO, text_encoder="hash", codebook_frames=64, codebook_iters=2, decoder_steps=2, tok_steps=4,
                tok_batch=4, s1_steps=3,
                s1_batch=2, s2_steps=2, s2_batch=2, s2_clip=10, warmup=1, log_every=1, ckpt_every=1)
    base.update(kw)
    return TrainConfig(**base)


def rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_all_stages_run_and_write_a_loadable_checkpoint(tmp_path, dataset):
    out = Trainer(small_config(tmp_path), batches_for(dataset), progress=False).run()
    steps = {(r["stage"], r["step"]) for r in rows(out) if "loss" in r}
    assert steps == {("tokenizer", i) for i in range(4)} | {("stage1", i) for i in range(3)} | {("stage2", i) for i in range(2)}
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows(out) if "loss" in r)
    assert (out / "loss_curves.png").stat().st_size > 1000
    model = WorldModel.load(out)
    assert model.cfg.dit.dim == 32
    state = model.init_state(1)
    frame = model.step(state, torch.tensor([1])).frame
    assert frame.shape == (1, 64, 64, 3) and frame.dtype == torch.uint8


def test_a_model_with_passability_counts_its_table_once_after_the_codebook(tmp_path, dataset):
    every = lambda: whole_episodes(dataset)  # noqa: E731
    model = {**MICRO, "game": {"passability": True}}
    out = Trainer(small_config(tmp_path, model=model), batches_for(dataset), progress=False, recordings=every).run()
    counted = [r for r in rows(out) if r.get("event") == "passability"]
    assert len(counted) == 1 and counted[0]["move_steps"] > 0 and 0 <= counted[0]["blocked_share"] <= 1
    table = WorldModel.load(out).passability.blocked
    assert table.shape == (32,) and bool(((table >= 0) & (table <= 1)).all())
    # fine-tuning a checkpoint into one with the table counts it before stage 2, once
    plain = Trainer(small_config(tmp_path / "plain"), batches_for(dataset), progress=False).run()
    tuned = Trainer(small_config(tmp_path / "tuned", init_from=str(plain), model={"game": {"passability": True}}),
                    batches_for(dataset), progress=False, recordings=every).run()
    assert [r["move_steps"] for r in rows(tuned) if r.get("event") == "passability"] == [counted[0]["move_steps"]]
    with pytest.raises(ValueError, match="every recording"):  # clips alone would see a few recordings
        Trainer(small_config(tmp_path / "clips", model=model), batches_for(dataset), progress=False).run()


def test_resume_continues_from_the_last_step(tmp_path, dataset):
    Trainer(small_config(tmp_path, s1_steps=2, s2_steps=0), batches_for(dataset), progress=False).run()
    first = rows(tmp_path)
    Trainer(small_config(tmp_path, s1_steps=4, s2_steps=0), batches_for(dataset), progress=False).run()
    second = rows(tmp_path)[len(first):]
    assert [r["step"] for r in second if r.get("stage") == "stage1"] == [2, 3]
    assert not [r for r in second if r.get("stage") == "tokenizer" and "loss" in r]  # not retrained
    meta = json.loads((tmp_path / "trainer.json").read_text())
    assert meta["done"] == {"tokenizer": 4, "stage1": 4, "stage2": 0}


def test_init_from_fine_tunes_stage2_only(tmp_path, dataset):
    base = Trainer(small_config(tmp_path / "base", s2_steps=0), batches_for(dataset), progress=False).run()
    before = WorldModel.load(base).state_dict()
    # another preset in the run's config: the checkpoint's own config wins
    out = Trainer(small_config(tmp_path / "ft", init_from=str(base), model={}, s2_steps=2),
                  batches_for(dataset), progress=False).run()
    trained = {(r["stage"], r["step"]) for r in rows(out) if "loss" in r}
    assert trained == {("stage2", 0), ("stage2", 1)}
    after = WorldModel.load(out).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("tokenizer."))  # frozen
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("dit."))


def test_init_from_with_model_overrides_warm_starts_a_changed_architecture(tmp_path, dataset):
    base = Trainer(small_config(tmp_path / "base", s2_steps=0), batches_for(dataset), progress=False).run()
    before = WorldModel.load(base).state_dict()
    cfg = small_config(tmp_path / "ft", init_from=str(base), s2_steps=1,
                       model={"dit": {"prev_shift": True, "prev_copy_clean": True}})
    out = Trainer(cfg, batches_for(dataset), progress=False).run()
    model = WorldModel.load(out)  # saved with the changed config
    assert model.cfg.dit.prev_shift and model.cfg.dit.prev_copy_clean
    warm = next(r for r in rows(out) if r.get("event") == "warm_start")
    assert set(warm["fresh"]) == {f"dit.prev.{h}.{p}" for h in ("shift_head", "keep_head") for p in ("weight", "bias")}
    assert set(warm["dropped"]) == {"dit.prev.mix_bias", "dit.prev.mix_head.weight", "dit.prev.mix_head.bias"}
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("tokenizer."))  # carried, frozen
    with pytest.raises(FileNotFoundError):
        WorldModel.warm_start(tmp_path / "nowhere", {"dit": {"prev_shift": True}})


def test_new_outcome_heads_train_alone_on_a_frozen_world(tmp_path, dataset):
    base = Trainer(small_config(tmp_path / "base", s2_steps=0), batches_for(dataset), progress=False).run()
    before = WorldModel.load(base).state_dict()
    cfg = small_config(tmp_path / "heads", init_from=str(base), s2_steps=2, s2_train="heads",
                       model={"dit": {"outcome_heads": "centre"}})
    out = Trainer(cfg, batches_for(dataset), progress=False).run()
    model = WorldModel.load(out)
    after = model.state_dict()
    heads = ("dit.reward_head.", "dit.done_head.")
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith(heads))  # the world as it was
    fresh = next(r for r in rows(out) if r.get("event") == "warm_start")["fresh"]
    assert fresh and all(k.startswith(heads) for k in fresh)
    assert all(k.startswith(heads) and k in fresh for k in after if k not in before)
    with pytest.raises(ValueError, match="s2_train"):
        small_config(tmp_path / "bad", s2_train="dit").validate()


def test_the_copy_gate_trains_alone_on_a_frozen_world(tmp_path, dataset):
    base = Trainer(small_config(tmp_path / "base", s2_steps=0), batches_for(dataset), progress=False).run()
    with pytest.raises(ValueError, match="copy_gate"):  # the base model has no gate to train
        Trainer(small_config(tmp_path / "nogate", init_from=str(base), s2_train="gate"), batches_for(dataset),
                progress=False).run()
    before = WorldModel.load(base).state_dict()
    gate = {"dit": {"copy_gate": True}, "sampler": {"snap": True}}
    cfg = small_config(tmp_path / "gate", init_from=str(base), s2_steps=2, s2_train="gate", model=gate)
    out = Trainer(cfg, batches_for(dataset), progress=False).run()
    after = WorldModel.load(out).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the world as it was
    assert {k for k in after if k not in before} == {f"dit.copy_gate.net.{i}.{p}" for i in (0, 2)
                                                     for p in ("weight", "bias")}
    trained = [r for r in rows(out) if r.get("stage") == "stage2" and "copy_recall" in r]
    keys = ("copy_only", "copy_recall", "copied", "wrong_copies")
    assert len(trained) == 2 and all(0 <= r[k] <= 1 for r in trained for k in keys)


def test_the_memory_trains_alone_on_a_frozen_world(tmp_path, dataset):
    base = Trainer(small_config(tmp_path / "base", s2_steps=0), batches_for(dataset), progress=False).run()
    before = WorldModel.load(base).state_dict()
    out = Trainer(small_config(tmp_path / "mem", init_from=str(base), s2_steps=2, s2_train="memory"),
                  batches_for(dataset), progress=False).run()
    after = WorldModel.load(out).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("policy."))  # the world as it was
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("policy."))
    with pytest.raises(ValueError, match="memory policy with weights"):  # a window has nothing to train
        Trainer(small_config(tmp_path / "win", init_from=str(base), s2_train="memory",
                             model={"memory": {"policy": "window"}}), batches_for(dataset), progress=False).run()


def moved_by_training(out, dataset, read, **cfg):
    """How far 3 stage-1 steps move the parameter `read(model)` (max abs change), and the model."""
    torch.manual_seed(0)
    start = read(WorldModel(from_preset("tiny", **MICRO))).detach().clone()
    run = Trainer(small_config(out, tok_steps=1, s1_steps=3, s2_steps=0, **cfg), batches_for(dataset),
                  progress=False).run()
    model = WorldModel.load(run)
    return (read(model) - start).abs().max().item(), model


def test_prompt_lr_mult_moves_the_prompt_projection_faster(tmp_path, dataset):
    read = lambda m: m.dit.prompt_proj.weight  # noqa: E731
    (slow, m1), (fast, m30) = (moved_by_training(tmp_path / f"x{k}", dataset, read, prompt_lr_mult=k)
                               for k in (1.0, 30.0))
    assert fast > 10 * slow > 0
    # everything else moved as it would have: only the projection's group is faster
    a, b = m1.dit.blocks[0].qkv.weight, m30.dit.blocks[0].qkv.weight
    assert (a - b).abs().max().item() < 0.5 * fast


def test_mix_lr_mult_moves_the_copy_paths_mix_logits_faster(tmp_path, dataset):
    read = lambda m: m.dit.prev.mix_bias  # noqa: E731
    slow, fast = (moved_by_training(tmp_path / f"x{k:g}", dataset, read, mix_lr_mult=k)[0] for k in (1.0, 100.0))
    assert fast > 20 * slow > 0
    # the two-group optimizer state resumes
    cfg = small_config(tmp_path / "x100", tok_steps=1, s1_steps=4, s2_steps=0, mix_lr_mult=100.0)
    Trainer(cfg, batches_for(dataset), progress=False).run()
    assert [r["step"] for r in rows(tmp_path / "x100") if r.get("stage") == "stage1"] == [0, 1, 2, 3]


def test_copy_loss_trains_the_copy_path_alone(tmp_path, dataset):
    out = Trainer(small_config(tmp_path, tok_steps=1, s1_steps=2, s2_steps=0, copy_loss_weight=1.0),
                  batches_for(dataset), progress=False).run()
    s1 = [r for r in rows(out) if r.get("stage") == "stage1"]
    assert all(r["copy"] > 0 and r["loss"] >= r["flow"] + r["copy"] - 1e-6 for r in s1)
    off = Trainer(small_config(tmp_path / "off", tok_steps=1, s1_steps=1, s2_steps=0), batches_for(dataset),
                  progress=False).run()
    assert all("copy" not in r for r in rows(off))


def test_mix_loss_is_trained_in_both_stages(tmp_path):
    # tile steps: every move is a whole token (MICRO's 16-px tokens: two 8-px tiles a token, so
    # a label on standing and on blocked frames, and on moves from a token boundary)
    record_episodes("teacher", "explore", episodes=2, steps=60, out_dir=tmp_path / "data", seed=5, progress=False,
                    motion="tile")
    model = dict(MICRO, game={"motion": "tile"})
    out = Trainer(small_config(tmp_path, model=model, tok_steps=1, s1_steps=2, s2_steps=1, mix_loss_weight=1.0),
                  batches_for([str(p) for p in list_shards(tmp_path / "data")]), progress=False).run()
    logged = [r for r in rows(out) if r.get("stage") in ("stage1", "stage2") and "loss" in r]
    assert len(logged) == 3 and all(r["shift"] > 0 for r in logged)
    assert all(0 <= r["shift_acc"] <= 1 for r in logged if r["stage"] == "stage1")


def test_resume_refuses_another_model(tmp_path, dataset):
    Trainer(small_config(tmp_path, s1_steps=1, s2_steps=0), batches_for(dataset), progress=False).run()
    other = dict(MICRO, dit={"dim": 64, "depth": 1, "heads": 2})
    with pytest.raises(ValueError, match="does not match the model config"):
        Trainer(small_config(tmp_path, model=other), batches_for(dataset), progress=False).run()


def test_latent_calibration_keeps_reconstructions(dataset):
    torch.manual_seed(0)
    model = WorldModel(from_preset("tiny", **MICRO))
    frames = next(batches_for(dataset)(1, 16))["frames"][:, 0]
    with torch.no_grad():
        before = model.tokenizer.decode_float(model.tokenizer.encode(frames))
    calibrate_latent_scale(model, frames)
    with torch.no_grad():
        assert float(model.tokenizer.encode(frames).std()) == pytest.approx(1.0, rel=1e-4)
        assert torch.allclose(model.tokenizer.decode_float(model.tokenizer.encode(frames)), before, atol=1e-5)


def test_actions_shift_onto_the_frames_they_cause():
    batch = {"actions": torch.tensor([[4, 1, 2]]), "rewards": torch.tensor([[0.0, 1.0, 0.0]]),
             "terminated": torch.tensor([[False, False, True]])}
    a, r, d = shift_actions(batch, "cpu")
    assert a.tolist() == [[0, 4, 1]] and r.tolist() == [[0.0, 0.0, 1.0]] and d.tolist() == [[0.0, 0.0, 0.0]]


def test_revisit_weights_mark_returns_after_the_window():
    # out 40 px to the right and back, 2 px per frame: frame 40 is back at frame 0's place
    xs = list(range(0, 42, 2)) + list(range(38, -2, -2))
    pos = torch.tensor([[[x, 0] for x in xs]])
    w = revisit_weights(pos, window=8, weight=3.0)
    assert w[0, 40] == 3.0 and w[0, 38] == 3.0  # within 4 px of frames seen >= 8 frames before
    assert (w[0, :22] == 1.0).all()  # going out: nothing seen before
    short = torch.tensor([[[x, 0] for x in [0, 2, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0]]])
    assert (revisit_weights(short, window=8, weight=3.0) == 1.0).all()  # never went 32 px away


def test_free_run_mask_leaves_out_only_tiles_the_model_drew_first():
    # 4x4 tokens of 8 px; one token to the right a frame; frames 1.. run on the model's own samples
    pos = torch.tensor([[[8 * j, 0] for j in range(4)]])
    m = free_run_mask(pos, free_start=1, grid=4, pixels_per_token=8).view(1, 4, 4, 4)  # [B, L, row, col]
    assert (m[0, :2] == 1).all()  # frame 0 is true context; frame 1's new column no frame showed yet
    # frame 2 shows tiles x = 2..5: 2-3 seen in the true frame 0, 4 first drawn by the model in frame 1, 5 new
    assert m[0, 2, :, 2].eq(0).all() and m[0, 2, :, [0, 1, 3]].eq(1).all()
    assert m[0, 3, :, 1:3].eq(0).all() and m[0, 3, :, [0, 3]].eq(1).all()  # x = 3 seen; 4, 5 drawn; 6 new
    assert (free_run_mask(pos, free_start=4, grid=4, pixels_per_token=8) == 1).all()  # no free run
    still = torch.zeros(1, 5, 2, dtype=torch.long)
    assert (free_run_mask(still, free_start=1, grid=4, pixels_per_token=8) == 1).all()  # nothing new shown


def test_stage2_free_run_trains(tmp_path, dataset):
    out = Trainer(small_config(tmp_path, tok_steps=1, s1_steps=0, s2_free_frames=6, self_rollout=0.0),
                  batches_for(dataset), progress=False).run()
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows(out) if r.get("stage") == "stage2")
    with pytest.raises(ValueError, match="s2_free_frames"):
        TrainConfig(s2_clip=8, s2_free_frames=9).validate()


def test_rarity_weights_lift_rare_codes_and_keep_the_mean():
    idx = torch.tensor([0] * 90 + [1] * 9 + [2]).view(1, 1, 100)  # ground, a common object, a rare one
    w = rarity_weights(idx, 4, 0.5).view(-1)
    assert abs(float(w.mean()) - 1) < 1e-5
    assert float(w[0]) < float(w[90]) < float(w[99])  # ground < common object < rare object
    assert abs(float(w[90] / w[0]) - (90 / 9) ** 0.5) < 1e-4  # p^-0.5
    assert torch.allclose(rarity_weights(idx, 4, 0.0), torch.ones(1, 1, 100))
    steep = rarity_weights(idx, 4, 4.0).view(-1)
    assert abs(float(steep[99] / steep[0]) - RARITY_CAP) < 1e-4  # capped at 10x the ground's weight


def test_stage2_rarity_weights_train_and_need_a_codebook(tmp_path, dataset):
    out = Trainer(small_config(tmp_path, tok_steps=1, s1_steps=0, s2_rare_power=0.5), batches_for(dataset),
                  progress=False).run()
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows(out) if r.get("stage") == "stage2")
    no_codes = small_config(tmp_path / "b", tok_steps=1, s1_steps=0, s2_rare_power=0.5)
    no_codes.model = {**no_codes.model, "tokenizer": {**no_codes.model["tokenizer"], "codebook_size": 0},
                      "sampler": {**no_codes.model.get("sampler", {}), "snap": False}}
    with pytest.raises(ValueError, match="no codebook"):
        Trainer(no_codes, batches_for(dataset), progress=False).run()


def test_head_losses_weigh_pickups_and_ends():
    reward, done = torch.zeros(1, 4), torch.zeros(1, 4)  # heads that never fire
    reward_in = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    done_in = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    rew, end = head_losses(reward, done, reward_in, done_in)
    assert rew == pytest.approx(0.25)  # plain MSE
    assert end == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(done, done_in)))
    rew10, end10 = head_losses(reward, done, reward_in, done_in, event_weight=10.0)
    assert rew10 == pytest.approx(2.5) and end10 == pytest.approx(end * 13 / 4)  # the missed events cost 10x
    # classifier heads: the reward is a pickup logit, scored by cross-entropy, pickups weighted
    rew_c, _ = head_losses(reward, done, reward_in, done_in, classify=True)
    assert rew_c == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(reward, reward_in)))
    rew_c10, _ = head_losses(reward, done, reward_in, done_in, event_weight=10.0, classify=True)
    assert rew_c10 == pytest.approx(rew_c * 13 / 4)


def test_shift_loss_weighs_blocked_moves():
    # frames: a move the camera made (label 5 = one token right), a blocked RIGHT (camera in
    # place, label 4), a NOOP in place, an unknown move; the head says "moved right" everywhere
    labels = torch.tensor([[5, 4, 4, -1]])
    action = torch.tensor([[4, 4, 0, 4]])  # RIGHT, RIGHT, NOOP, RIGHT
    logits = torch.zeros(1, 4, 9)
    logits[..., 5] = 3.0
    ce = lambda w: float(shift_head_loss(logits, labels, action, w)[0])
    per = torch.nn.functional.cross_entropy(logits[0, :3], labels[0, :3], reduction="none")
    assert abs(ce(1.0) - float(per.mean())) < 1e-5
    assert abs(ce(5.0) - float((per[0] + 5 * per[1] + per[2]) / 7)) < 1e-5 and ce(5.0) > ce(1.0)
    assert abs(float(shift_head_loss(logits, labels, action)[1]) - 1 / 3) < 1e-6  # right on the moved frame only


def test_mix_loss_scores_the_tokens_that_are_copies():
    # a 4x4 grid, two frames: moved one token right (label 5), and a blocked move (label 4)
    labels, action = torch.tensor([[5, 4]]), torch.tensor([[4, 4]])
    logits = torch.zeros(1, 2, 16, 9)
    logits[..., 5] = 2.0                          # every token copies from its right neighbour...
    player = 2 * 4 + 2
    logits[:, :, player] = 0.0
    logits[:, :, player, 4] = 50.0                 # ...but the player's, which stays (never scored)
    ce, acc = shift_head_loss(logits, labels, action)
    # moved right: neither the player, the last column (new content) nor the player's left
    # neighbour (its source is the player, not the ground it shows) is a copy: 10 tokens;
    # in place: every token but the player's, 15
    scored = copyable(4, [player])
    assert scored[5].sum() == 10 and not scored[5, player - 1] and scored[4].sum() == 15
    per_frame = [float(torch.nn.functional.cross_entropy(logits[0, f, :1], labels[0, f:f + 1])) for f in (0, 1)]
    assert abs(float(ce) - (10 * per_frame[0] + 15 * per_frame[1]) / 25) < 1e-5
    assert abs(float(acc) - 10 / 25) < 1e-6


def test_crafter_mix_loss_leaves_the_player_and_status_bar_in_place():
    from world.config import GameConfig

    fixed = GameConfig(env="crafter").fixed_tokens(8)
    assert fixed[0] == 3 * 8 + 4 and fixed[1:] == list(range(48, 64))  # the player's tile, two status rows
    assert GameConfig().fixed_tokens(8) == [4 * 8 + 4]
    with pytest.raises(ValueError, match="grid_size"):
        GameConfig(env="crafter").fixed_tokens(4)
    # every token scores "one right" but the fixed ones say "in place" (4) with certainty:
    # scored as Crafter, only the moving tokens count, all right; scored as the teacher, the
    # status bar's tokens are scored (and wrong)
    labels, action = torch.tensor([[5]]), torch.tensor([[2]])
    logits = torch.zeros(1, 1, 64, 9)
    logits[..., 5] = 50.0
    logits[:, :, fixed] = 0.0
    logits[:, :, fixed, 4] = 50.0
    ce, acc = shift_head_loss(logits, labels, action, copy_ok=copyable(8, fixed))
    assert float(ce) < 1e-6 and float(acc) == 1.0
    assert float(shift_head_loss(logits, labels, action)[1]) < 0.8


def test_optimizer_state_round_trips_without_pickle():
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.AdamW([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    tensors, groups = flatten_optimizer(opt)
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = torch.optim.AdamW([q], lr=0.5)
    load_optimizer(opt2, tensors, json.loads(json.dumps(groups)))
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert opt2.param_groups[0]["lr"] == 0.1


def test_bad_train_config():
    with pytest.raises(ValueError, match="caption_dropout"):
        TrainConfig(caption_dropout=2.0).validate()
    with pytest.raises(ValueError, match="text_encoder"):
        TrainConfig(text_encoder="gpt").validate()


DDP_WORKER = """
import json, sys, torch, torch.distributed as dist
sys.path.insert(0, {root!r})
from tests.test_train import batches_for, small_config
from world.train import Trainer, init_distributed
rank, world = init_distributed()
shards = json.loads(sys.argv[1])
cfg = small_config(sys.argv[2], tok_steps=2, s1_steps=2, s2_steps=1)
trainer = Trainer(cfg, batches_for(shards[rank::world], seed=rank), rank=rank, world_size=world, progress=False)
trainer.run()
flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(world)]
dist.all_gather(gathered, flat)
if rank == 0:
    print("MAXDIFF", max(float((g - flat).abs().max()) for g in gathered))
    print("CHANGED", float((flat - torch.cat([p.flatten() for p in trainer.initial])).abs().max()))
dist.destroy_process_group()
"""


def test_ddp_two_processes_stay_in_sync(tmp_path, dataset):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER.format(root=root).replace(
        "trainer.run()", "trainer.initial = [p.detach().clone() for p in trainer.model.parameters()]\ntrainer.run()"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), json.dumps(dataset), str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split() for line in proc.stdout.splitlines() if line.startswith(("MAXDIFF", "CHANGED")))
    assert float(lines["MAXDIFF"]) == 0.0, "ranks diverged"
    assert float(lines["CHANGED"]) > 0.0, "training changed nothing"


def test_cpu_budget_ends_a_stage_and_resume_keeps_it(tmp_path, dataset):
    cfg = small_config(tmp_path, s1_steps=10_000, s1_cpu_minutes=0.01, s2_steps=0)
    out = Trainer(cfg, batches_for(dataset), progress=False).run()
    spent = [r for r in rows(out) if r.get("event") == "cpu_budget_spent"]
    assert len(spent) == 1 and spent[0]["stage"] == "stage1" and spent[0]["cpu_seconds"] >= 0.6
    steps = spent[0]["steps"]
    assert 1 <= steps < 10_000
    Trainer(cfg, batches_for(dataset), progress=False).run()  # resumed: the budget is spent, nothing runs
    assert json.loads((out / "trainer.json").read_text())["done"]["stage1"] == steps


def test_single_stream_stage1_trains(tmp_path, dataset):
    out = Trainer(small_config(tmp_path, s1_streams=1, s2_steps=0), batches_for(dataset), progress=False).run()
    losses = [r["loss"] for r in rows(out) if r.get("stage") == "stage1" and "loss" in r]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))


def test_train_bench_reports_every_stage_against_the_machine():
    from world.train_bench import run_train_bench

    r = run_train_bench({"model": MICRO, "s2_clip": 6, "tok_batch": 2, "s1_batch": 1, "s2_batch": 1},
                        steps=1, warmup=1)
    assert set(r["stages"]) == {"tokenizer", "stage1", "stage2"} and r["machine_matmul_gflops"] > 0
    for s in r["stages"].values():
        assert s["seconds_per_step"] > 0 and s["gflop_per_step"] > 0 and 0 < s["share_of_matmul_rate"] < 1


def test_learn_bench_trains_for_its_budget_and_measures_proxy_seeds(tmp_path, dataset):
    from envs.learn_bench import PROXY_SEED_BASE, parse_lever, run_learn_bench
    from envs.evaluate import EVAL_SEED_BASE

    tok = tmp_path / "tok"
    # a tokenizer without a codebook: the bench fits one for its model, as training would
    WorldModel(from_preset("tiny", **{**MICRO, "tokenizer": {**MICRO["tokenizer"], "codebook_size": 0},
                                      "sampler": {"snap": False}})).save(tok)
    data = sorted({os.path.dirname(p) for p in dataset})
    r = run_learn_bench(data, minutes=0.01, tokenizer_from=str(tok), overrides={"model": MICRO, "s1_batch": 1,
                        "text_encoder": "hash", "codebook_frames": 64, "codebook_iters": 2,
                        "decoder_steps": 2}, seeds=1,
                        out=str(tmp_path / "run"), progress=False)
    assert len(torch.unique(WorldModel.load(tmp_path / "run").tokenizer.codebook, dim=0)) == 32
    assert r["stage1_steps"] >= 1 and r["stage1_cpu_seconds"] >= 0.6
    assert r["proxy_seeds"] == [PROXY_SEED_BASE] and PROXY_SEED_BASE + 1000 < EVAL_SEED_BASE
    assert 0 < r["teacher_forced_psnr"] < 100 and set(r["psnr_by_horizon"]) == {"1", "4", "16", "64"}
    assert parse_lever('{"s1_streams": 1}') == {"s1_streams": 1}
    with pytest.raises(ValueError, match="JSON object"):
        parse_lever("[1, 2]")


def test_latent_cache_gives_what_encoding_gives(dataset):
    from world.train import LatentCache

    model = WorldModel(from_preset("tiny", **MICRO)).eval()
    calls = []
    cache = LatentCache(lambda f: calls.append(len(f)) or model.tokenizer.encode(f))
    batch = next(batches_for(dataset)(5, 2))
    with torch.no_grad():
        want = model.tokenizer.encode(batch["frames"].reshape(10, 64, 64, 3)).view(2, 5, *cache(batch, "cpu").shape[2:])
    assert torch.equal(cache(batch, "cpu"), want)
    assert calls == [10]  # the second call was served from the cache
    synthetic = {"frames": batch["frames"]}
    assert torch.equal(cache(synthetic, "cpu"), want) and calls == [10, 10]


def test_stage1_runs_without_the_latent_cache(tmp_path, dataset):
    out = Trainer(small_config(tmp_path, cache_latents=False, s2_steps=0), batches_for(dataset), progress=False).run()
    assert len([r for r in rows(out) if r.get("stage") == "stage1" and "loss" in r]) == 3


def test_proxy_bench_measures_a_checkpoint_and_draws_its_strip(tmp_path):
    from demos.cli import main
    from envs.learn_bench import PROXY_SEED_BASE, run_proxy

    ck = tmp_path / "ck"
    WorldModel(from_preset("tiny", **MICRO)).save(ck)
    (ck / "trainer.json").write_text(json.dumps({"train_config": {"text_encoder": "hash"}}))
    r = run_proxy(str(ck), seeds=1, horizons=(1, 2), strip=str(tmp_path / "strip.png"), progress=False)
    assert r["proxy_seeds"] == [PROXY_SEED_BASE] and set(r["psnr_by_horizon"]) == {"1", "2"}
    assert (tmp_path / "strip.png").stat().st_size > 1000
    assert main(["bench", "--target", "proxy"]) == 2  # no --checkpoint: one clear error
    assert main(["bench", "--target", "proxy", "--checkpoint", str(tmp_path / "none")]) == 2
    assert main(["bench", "--target", "proxy", "--checkpoint", str(ck), "--horizons", "4,x"]) == 2


def test_switch_clips_oversample_caption_changes(switching):
    def with_change(switch_clips):
        ds = ClipDataset(switching, 16, stride=8, seed=0, epochs=1, switch_clips=switch_clips)
        clips = list(ds)
        return len(clips), sum(len(set(c["captions"])) > 1 for c in clips)

    from envs.dataset import load_episode

    changes = sum(int((np.diff(e.caption_ids[:e.length]) != 0).sum()) for e in map(load_episode, switching))
    n0, changed0 = with_change(0)
    n8, changed8 = with_change(8)
    assert changes > 0 and n8 - n0 == 8 * changes  # 8 more clips per caption change
    assert changed8 >= n8 - n0 and changed8 / n8 > changed0 / n0 + 0.25  # ... each holding the change
    with pytest.raises(ValueError, match="switch_clips"):
        ClipDataset(switching, 16, switch_clips=-1)


def test_stage2_switches_the_prompt_where_captions_change(tmp_path, switching, monkeypatch):
    calls = []
    real = WorldModel.set_prompt

    def spy(self, state, prompt, recache=True):
        calls.append(len(prompt))
        return real(self, state, prompt, recache)

    monkeypatch.setattr(WorldModel, "set_prompt", spy)
    out = Trainer(small_config(tmp_path, tok_steps=1, s1_steps=0, s2_steps=3, s2_switch_clips=50, caption_dropout=0.0),
                  batches_for(switching), progress=False).run()
    assert calls and set(calls) == {2}  # switched mid-clip, for the whole batch of 2 at once
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows(out) if r.get("stage") == "stage2")


def test_shift_head_learns_the_camera_moves_in_both_stages(tmp_path):
    """dit.prev_shift: the shift head is trained on the teacher's moves (tile motion: one token a
    step) in stage 1 and stage 2, and the keep gate's bias trains in mix_lr_mult's fast group."""
    data = tmp_path / "tile"
    record_episodes("teacher", "explore", episodes=2, steps=60, out_dir=data, seed=5, progress=False, motion="tile")
    model = {"tokenizer": {"channels": [8, 8]}, "dit": {"dim": 32, "depth": 1, "heads": 2,
             "prev_copy_clean": True, "prev_shift": True}, "memory": {"window_frames": 4, "memory_tokens_per_frame": 4}}
    cfg = small_config(tmp_path / "run", model=model, tok_steps=1, s1_steps=12, s2_steps=2, mix_lr_mult=100.0,
                       shift_loss_weight=1.0, s1_lr=3e-3)
    out = Trainer(cfg, batches_for([str(p) for p in list_shards(data)]), progress=False).run()
    s1 = [r for r in rows(out) if r.get("stage") == "stage1" and "loss" in r]
    assert all("shift" in r and "shift_acc" in r for r in s1)
    assert s1[-1]["shift"] < s1[0]["shift"]  # the head learns which way the camera went
    assert all("shift" in r for r in rows(out) if r.get("stage") == "stage2" and "loss" in r)
    trained = WorldModel.load(out).dit.prev
    assert abs(trained.keep_head.bias.item() + 2.0) > 1e-3  # the gate's bias trained (at 100x the LR)


def test_fixed_change_weights_lift_the_fixed_tokens_that_change():
    idx = torch.tensor([[[0, 1, 2], [0, 1, 3], [3, 1, 3]]])  # [B=1, L=3, N=3]: token 2 fixed
    w = fixed_change_weights(idx, [2], 50.0)
    assert torch.equal(w, torch.tensor([[[1.0, 1, 1], [1, 1, 50], [1, 1, 1]]]))  # token 0 changed but is not fixed


def test_the_clock_trains_and_clock_lr_mult_speeds_it(tmp_path, dataset):
    moved = {}
    for k in (1.0, 10.0):
        cfg = small_config(tmp_path / f"c{k:g}", tok_steps=1, s1_steps=3, s2_steps=2, clock_lr_mult=k,
                           fixed_change_weight=5.0, model={**MICRO, "dit": {**MICRO.get("dit", {}), "clock": True}})
        model = WorldModel.load(Trainer(cfg, batches_for(dataset), progress=False).run())
        moved[k] = model.dit.clock.phase.weight.abs().max().item()  # zero-initialised
    assert moved[10.0] > 5 * moved[1.0] > 0
