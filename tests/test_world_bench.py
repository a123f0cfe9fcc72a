"""The model bench returns the documented keys (a smoke run, not a timing test)."""

from world.bench import run_model_bench


def test_bench_keys():
    r = run_model_bench(preset="tiny", policy="evolving", frames=8, steps=1, warmup=2, progress=False)
    for key in ("fps", "latency_ms", "latency_ratio_last_first", "rss_mb", "frames", "policy", "preset",
                "backend", "steps"):
        assert key in r
    assert set(r["latency_ms"]) >= {"p50", "p95", "p99"}
    assert set(r["rss_mb"]) == {"start", "end"}
    assert r["frames"] == 8 and r["backend"] == "torch" and r["policy"] == "evolving" and r["steps"] == 1
    assert r["fps"] > 0 and r["final_frame_index"] == 10


def test_bench_from_checkpoint_with_another_policy(tmp_path):
    from world.config import from_preset
    from world.model import WorldModel

    cfg = from_preset("tiny", tokenizer={"image_size": 16, "channels": [8]}, dit={"dim": 32, "depth": 2, "heads": 2},
                      memory={"window_frames": 4, "memory_tokens_per_frame": 4})
    WorldModel(cfg).save(tmp_path / "ck")  # an evolving-memory checkpoint ...
    r = run_model_bench(policy="sink", frames=8, warmup=1, random_init=False, checkpoint=str(tmp_path / "ck"),
                        progress=False)  # ... run with the sink policy: memory weights are not needed
    assert r["policy"] == "sink" and r["frames"] == 8


def test_allocator_settings_take_on_glibc():
    import platform

    from world.allocator import keep_freed_memory

    ok = keep_freed_memory()
    assert ok == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    assert keep_freed_memory() == ok  # idempotent
