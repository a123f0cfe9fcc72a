"""engines/: every backend against the eager reference, export/manifest checks, fallbacks, CLI.

Parity runs streamed frames with the window full (evictions into memory every
frame) and compares latents, float pixels (before uint8 rounding), heads, the
memory state, the cache and the previous frame the DiT reads, for the tiny
preset (dit.prev_frame on, x0 prediction) and a model without the direct path
(velocity prediction). CPU only; TensorRT and CUDA tests skip with a reason.
"""

import json

import pytest
import torch

from engines import registry
from engines.backend import BackendUnavailable, EagerGraphBackend, TorchBackend
from engines.registry import BACKENDS, available_backends, make_backend
from engines.graphs import Unsupported
from engines.onnx_export import FORMAT, ManifestError, export_onnx, file_sha256, model_hash, read_manifest
from demos.cli import main
from world.config import from_preset
from world.model import WorldModel, build_model

TOL = 1e-3  # fp32 max abs difference allowed over a whole run
NO_PREV = {"prev_frame": False, "prediction": "velocity"}  # the DiT before the direct path (issue 14)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared; tiny graphs do not gain from more
    yield
    torch.set_num_threads(threads)


def tiny(seed=0, prev_frame=True):
    """The tiny preset (prev_frame on); prev_frame=False: the same model without the direct path."""
    torch.manual_seed(seed)  # randomize_ perturbs biases around their (seeded) init
    model = build_model("tiny") if prev_frame else build_model("tiny", dit=NO_PREV)
    return model.randomize_(seed).eval()


def micro(policy="evolving", chunk=1, prompt_mode="pooled", context_noise=0.0, seed=1, prev_frame=True,
          guidance=1.0, dit=None, **memory):
    """16x16 frames, 16 tokens, dim 32: hundreds of frames per second."""
    mem = {"policy": policy, "chunk_frames": chunk, "window_frames": 4 * chunk, "sink_frames": chunk,
           "memory_frames": 2, "memory_tokens_per_frame": 4, "full_capacity": 64, **memory}
    dit = {"dim": 32, "depth": 2, "heads": 2, "prompt_mode": prompt_mode, "prompt_tokens": 4,
           **({} if prev_frame else NO_PREV), **(dit or {})}
    cfg = from_preset("tiny", tokenizer={"image_size": 16, "channels": [8]}, dit=dit,
                      memory=mem, sampler={"context_noise": context_noise, "guidance": guidance})
    torch.manual_seed(seed)
    return WorldModel(cfg).eval().randomize_(seed)


@pytest.fixture(scope="module")
def tiny_model():
    return tiny()


@pytest.fixture(scope="module")
def tiny_onnx(tiny_model, tmp_path_factory):
    return export_onnx(tiny_model, tmp_path_factory.mktemp("onnx") / "tiny", batch=1)


def max_diff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


def run_parity(model, ref, other, frames, batch=1, steps=2, seed=3, prompt=None):
    """Step both backends on equal states with the same actions; the worst difference of everything."""
    s_ref = model.init_state(batch, prompt=prompt, seed=seed)
    s_oth = model.init_state(batch, prompt=prompt, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    c = model.cfg.memory.chunk_frames
    shape = (batch,) if c == 1 else (batch, c)
    worst = {"x0": 0.0, "pixels": 0.0, "heads": 0.0, "memory": 0.0, "cache": 0.0, "prev": 0.0, "frames_uint8": 0}
    for _ in range(frames):
        a = torch.randint(0, model.cfg.dit.num_actions, shape, generator=gen)
        x_r, r_r, d_r = ref.step_latents(s_ref, a, steps)
        x_o, r_o, d_o = other.step_latents(s_oth, a, steps)
        flat = lambda x: x.reshape(-1, *x.shape[2:])
        p_r, p_o = ref.decode_float(flat(x_r)), other.decode_float(flat(x_o))
        worst["x0"] = max(worst["x0"], max_diff(x_r, x_o))
        worst["pixels"] = max(worst["pixels"], max_diff(p_r, p_o))
        worst["heads"] = max(worst["heads"], max_diff(r_r, r_o), max_diff(d_r, d_o))
        worst["prev"] = max(worst["prev"], max_diff(s_ref.prev_latent, s_oth.prev_latent),
                            max_diff(s_ref.prev_level, s_oth.prev_level))
    for k in s_ref.memory:
        worst["memory"] = max(worst["memory"], max_diff(s_ref.memory[k], s_oth.memory[k]))
    worst["cache"] = max(max_diff(s_ref.cache.k, s_oth.cache.k), max_diff(s_ref.cache.v, s_oth.cache.v))
    assert torch.equal(s_ref.frame, s_oth.frame) and torch.equal(s_ref.cache.slot_frame, s_oth.cache.slot_frame)
    assert x_r.abs().mean() > 0.1 and p_r.std() > 0.01  # not a comparison of zeros
    assert s_oth.prev_latent.abs().mean() > 0.1 and (s_oth.prev_level < 1).all()  # a previous frame was read
    # whole steps too: uint8 frames may differ by one level where a value sits on a rounding edge
    f_r = ref.step(s_ref, torch.zeros(shape, dtype=torch.long), steps).frame
    f_o = other.step(s_oth, torch.zeros(shape, dtype=torch.long), steps).frame
    worst["frames_uint8"] = max_diff(f_r, f_o)
    return worst, s_ref


def assert_close(worst, tol=TOL):
    bad = {k: v for k, v in worst.items() if k != "frames_uint8" and v > tol}
    assert not bad, f"max abs differences over {tol}: {bad}"
    assert worst["frames_uint8"] <= 1


# -- the graphs in eager torch are the eager model --------------------------------------


@pytest.mark.parametrize("prev_frame", [True, False], ids=["prev_frame", "no_prev_frame"])
def test_graphs_are_the_eager_step(prev_frame, tiny_model):
    model = tiny_model if prev_frame else tiny(prev_frame=False)
    assert model.cfg.dit.prev_frame == prev_frame and model.cfg.dit.prediction == ("x0" if prev_frame else "velocity")
    worst, state = run_parity(model, TorchBackend(model), EagerGraphBackend(model), frames=12)
    assert int(state.frame[0]) > model.cfg.memory.window_frames  # evictions happened
    assert_close(worst, tol=1e-6)


def test_graph_step_reads_the_previous_frame(tiny_model):
    """The DiTStep graph is the eager pass given the state's previous frame, and depends on it."""
    from engines.graphs import DiTContext, DiTStep

    m = tiny_model
    state = m.init_state(1, seed=0)
    for a in range(3):
        m.step_latents(state, torch.tensor([a]))
    c = state.cache
    ctx_eager = m.prepare(state)
    ctx = DiTContext(m)(state.frame, c.slot_frame, c.k, c.v, *[state.memory[n] for n in sorted(state.memory)])
    x, t, a = torch.randn(1, 1, 64, 32), torch.full((1, 1), 0.5), torch.tensor([[2]])
    step = DiTStep(m)
    v = step(x, t, a, state.prev_latent, state.prev_level, state.prev_clean, state.prompt_pooled, *ctx)[0]
    assert max_diff(v, m.velocity(state, ctx_eager, x, t, a)[0]) <= 1e-6
    v_none = step(x, t, a, torch.zeros_like(state.prev_latent), torch.ones_like(state.prev_level),
                  torch.zeros_like(state.prev_clean), state.prompt_pooled, *ctx)[0]
    assert max_diff(v, v_none) > 1e-2


# -- onnxruntime -------------------------------------------------------------------------


@pytest.mark.parametrize("prev_frame", [True, False], ids=["prev_frame", "no_prev_frame"])
def test_onnxruntime_parity_50_frames(prev_frame, tiny_model, tiny_onnx, tmp_path):
    model = tiny_model if prev_frame else tiny(prev_frame=False)
    onnx_dir = tiny_onnx if prev_frame else tmp_path / "onnx"
    ort_backend = make_backend("onnxruntime", model, 1, cache_dir=onnx_dir, warn=pytest.fail)
    assert ort_backend.name == "onnxruntime"
    step_inputs = {i.name for i in ort_backend.graphs["dit_step"].session.get_inputs()}
    assert ({"prev_latent", "prev_level"} <= step_inputs) == prev_frame  # unused inputs are dropped
    assert "prev_clean" not in step_inputs  # read only with dit.prev_copy_clean
    worst, state = run_parity(model, TorchBackend(model), ort_backend, frames=50)
    # 50 frames through a window of 8: every frame from the 9th on evicted one into the memory
    q0 = model.policy.query_init
    assert (state.memory["queries"][0] - q0).abs().max() > 1e-2
    assert_close(worst)
    print(f"onnxruntime vs torch, 50 frames (prev_frame={prev_frame}):", worst)


@pytest.mark.parametrize("case", [
    dict(policy="compress"),
    dict(policy="sink"),
    dict(policy="window"),
    dict(policy="evolving", chunk=2),
    dict(policy="evolving", prompt_mode="cross_attention", context_noise=0.1),
    dict(policy="evolving", updates=False),
    dict(policy="evolving", chunk=2, context_noise=0.1),
    dict(policy="evolving", chunk=2, context_noise=0.1, prev_frame=False),
    dict(policy="compress", prompt_mode="cross_attention", prev_frame=False),
    dict(policy="evolving", context_noise=0.1, dit={"prev_copy_clean": True, "prev_shift": True}),
    dict(policy="evolving", chunk=2, dit={"clock": True}),
], ids=["compress", "sink", "window", "chunk2", "cross_attention+context_noise", "no_updates",
        "chunk2+context_noise", "no_prev_frame+chunk2+context_noise", "no_prev_frame+compress+cross_attention",
        "clean_copy+shift_head+context_noise", "clock+chunk2"])
def test_onnxruntime_parity_settings(case, tmp_path):
    model = micro(**case)
    ort_backend = make_backend("onnxruntime", model, 2, cache_dir=tmp_path / "onnx", warn=pytest.fail)
    worst, _ = run_parity(model, TorchBackend(model), ort_backend, frames=14, batch=2)
    assert_close(worst)


@pytest.mark.parametrize("prompt_mode", ["pooled", "cross_attention"])
def test_guidance_is_the_same_on_every_backend_and_pulls_towards_the_prompt(prompt_mode, tmp_path):
    from world.text import PromptEmbedding

    model = micro(prompt_mode=prompt_mode, guidance=3.0)
    g = torch.Generator().manual_seed(0)
    prompts = [PromptEmbedding(torch.randn(384, generator=g), torch.randn(3, 384, generator=g),
                               torch.ones(3, dtype=torch.bool)) for _ in range(2)]
    ort_backend = make_backend("onnxruntime", model, 2, cache_dir=tmp_path / "onnx", warn=pytest.fail)
    for other in (EagerGraphBackend(model, 2), ort_backend):
        worst, _ = run_parity(model, TorchBackend(model), other, frames=8, batch=2, prompt=prompts)
        assert_close(worst)

    def first_frame(guidance, prompt):
        model.cfg.sampler.guidance = guidance
        try:
            return model.step_latents(model.init_state(2, prompt, seed=4), torch.tensor([1, 2]))[0]
        finally:
            model.cfg.sampler.guidance = 3.0

    assert max_diff(first_frame(3.0, prompts), first_frame(1.0, prompts)) > 1e-3  # guidance changes the frame
    assert max_diff(first_frame(3.0, None), first_frame(1.0, None)) < 1e-6  # the empty prompt: nothing to pull


def test_switch_guidance_guides_the_switching_world_only_on_every_backend(tmp_path):
    """sampler.switch_guidance: after world 1's prompt changes, world 1 is guided for snap_hold
    frames, world 0 is drawn as without it; onnxruntime agrees with torch throughout."""
    from world.text import PromptEmbedding

    model = micro()
    model.cfg.sampler.snap_hold = 3
    g = torch.Generator().manual_seed(0)
    prompts = [PromptEmbedding(torch.randn(384, generator=g), torch.randn(3, 384, generator=g),
                               torch.ones(3, dtype=torch.bool)) for _ in range(3)]
    ort_backend = make_backend("onnxruntime", model, 2, cache_dir=tmp_path / "onnx", warn=pytest.fail)
    a = torch.tensor([1, 2])

    def run(switch_guidance, backend):
        model.cfg.sampler.switch_guidance = switch_guidance
        try:
            state, frames, scales = model.init_state(2, prompts[:2], seed=5), [], []
            for i in range(6):
                if i == 2:
                    assert model.set_prompt(state, [prompts[0], prompts[2]]) == [1]
                scales.append(model.guidance_scales(state))
                frames.append(backend.step_latents(state, a)[0])
            return torch.stack(frames), scales
        finally:
            model.cfg.sampler.switch_guidance = None

    guided, scales = run(4.0, model)
    plain, plain_scales = run(None, model)
    assert all(s is None for s in plain_scales)  # guidance 1, no switch guidance: one pass a step
    assert scales[0] is None and scales[1] is None and scales[5] is None  # before the switch; after snap_hold
    assert [s.flatten().tolist() for s in scales[2:5]] == [[1.0, 4.0]] * 3
    assert max_diff(guided[:, 0], plain[:, 0]) < 1e-5  # world 0 never switched
    assert max_diff(guided[:2], plain[:2]) < 1e-6
    assert max_diff(guided[2, 1], plain[2, 1]) > 1e-3  # world 1's switch frame is guided
    assert max_diff(run(4.0, ort_backend)[0], guided) <= TOL


def test_onnxruntime_prompts_and_snapshots(tmp_path):
    """The state stays a torch WorldState: snapshot/restore and prompt changes work as in eager."""
    from world.text import PromptEmbedding

    model = micro(prompt_mode="cross_attention")
    ort_backend = make_backend("onnxruntime", model, 2, cache_dir=tmp_path / "onnx", warn=pytest.fail)
    g = torch.Generator().manual_seed(0)
    prompts = [PromptEmbedding(torch.randn(384, generator=g), torch.randn(3, 384, generator=g),
                               torch.ones(3, dtype=torch.bool)) for _ in range(2)]
    torch_state, ort_state = model.init_state(2, prompts, seed=5), model.init_state(2, prompts, seed=5)
    a = torch.tensor([1, 2])

    def lockstep(frames):
        for _ in range(frames):
            x_t, x_o = model.step_latents(torch_state, a)[0], ort_backend.step_latents(ort_state, a)[0]
            assert max_diff(x_t, x_o) <= TOL

    lockstep(6)
    snap = ort_state.snapshot()
    run1 = [ort_backend.step(ort_state, a).frame for _ in range(6)]
    ort_state = model.restore(snap)
    run2 = [ort_backend.step(ort_state, a).frame for _ in range(6)]
    assert all(torch.equal(x, y) for x, y in zip(run1, run2))
    for _ in range(6):
        model.step(torch_state, a)
    model.set_prompt(torch_state, prompts[::-1])
    model.set_prompt(ort_state, prompts[::-1])
    lockstep(6)


def test_onnxruntime_checks_batch_of_state(tiny_model, tiny_onnx):
    ort_backend = make_backend("onnxruntime", tiny_model, 1, cache_dir=tiny_onnx)
    with pytest.raises(ValueError, match="batch 1"):
        ort_backend.step(tiny_model.init_state(2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="action"):
        ort_backend.step(tiny_model.init_state(1), torch.zeros(3, dtype=torch.long))


# -- export and manifest -----------------------------------------------------------------


def test_manifest_describes_the_graphs(tiny_model, tiny_onnx, tmp_path):
    m = read_manifest(tiny_onnx, tiny_model, 1)
    assert m["model_hash"] == model_hash(tiny_model)
    assert set(m["graphs"]) == {"dit_context", "dit_step", "memory_update", "decoder"}
    assert m["format"] == FORMAT == 3
    assert m["graphs"]["dit_step"]["inputs"]["x"] == {"shape": [1, 1, 64, 32], "dtype": "float32"}
    assert m["graphs"]["dit_step"]["inputs"]["prev_latent"] == {"shape": [1, 64, 32], "dtype": "float32"}
    assert m["graphs"]["dit_step"]["inputs"]["prev_level"] == {"shape": [1], "dtype": "float32"}
    assert m["graphs"]["dit_step"]["outputs"]["velocity"]["shape"] == [1, 1, 64, 32]
    assert m["graphs"]["dit_step"]["outputs"]["new_k"]["shape"] == [4, 1, 4, 1, 64, 32]
    assert m["graphs"]["memory_update"]["inputs"]["evict"]["dtype"] == "bool"
    assert m["opset"] == 17 and m["torch_version"] == torch.__version__ and m["batch"] == 1
    # the model hash is the sha256 of model.safetensors as WorldModel.save writes it
    tiny_model.save(tmp_path / "ckpt")
    assert file_sha256(tmp_path / "ckpt" / "model.safetensors") == m["model_hash"]
    import onnx

    for g in m["graphs"].values():
        onnx.checker.check_model(str(tiny_onnx / g["file"]))


def test_onnx_dir_of_another_model_is_refused(tiny_model, tiny_onnx):
    other = tiny(seed=1)
    with pytest.raises(ManifestError) as e:
        make_backend("onnxruntime", other, 1, cache_dir=tiny_onnx)
    assert model_hash(other) in str(e.value) and model_hash(tiny_model) in str(e.value)
    with pytest.raises(ManifestError, match="batch 1, not 2"):
        make_backend("onnxruntime", tiny_model, 2, cache_dir=tiny_onnx)


def test_onnx_dir_of_an_older_format_is_refused(tiny_model, tiny_onnx, tmp_path):
    """An export of an older format (1: before the previous-frame inputs) is refused, naming the way out."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_onnx, old)
    m = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**m, "format": 1}))
    with pytest.raises(ManifestError, match=rf"older echo-infinity \(manifest format 1, this version reads {FORMAT}"):
        make_backend("onnxruntime", tiny_model, 1, cache_dir=old, warn=pytest.fail)
    (old / "manifest.json").write_text(json.dumps({**m, "format": FORMAT + 1}))
    with pytest.raises(ManifestError, match="upgrade echo-infinity"):
        read_manifest(old, tiny_model, 1)


def test_onnx_dir_with_another_config_is_refused(tmp_path):
    export_onnx(micro("sink"), tmp_path, batch=1)
    with pytest.raises(ManifestError, match="memory.policy: 'sink' vs 'window'"):
        read_manifest(tmp_path, micro("window"), 1)  # same weights (no memory params), other graphs


def test_unsupported_settings(tmp_path):
    full = micro("full")
    with pytest.raises(Unsupported, match="policy 'full'"):
        export_onnx(full, tmp_path)
    warnings = []
    b = make_backend("onnxruntime", full, 1, cache_dir=tmp_path, warn=warnings.append)
    assert b.name == "torch" and "policy 'full'" in warnings[0] and "falling back to 'torch'" in warnings[0]
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("tvm", full, 1)


def test_default_cache_dir_is_per_model(tmp_path, monkeypatch):
    monkeypatch.setenv("ECHO_INFINITY_CACHE", str(tmp_path))
    model = micro()
    b = make_backend("onnxruntime", model, 1, warn=pytest.fail)
    dirs = list((tmp_path / "onnx").iterdir())
    assert len(dirs) == 1 and dirs[0].name.startswith(model_hash(model)[:16])
    assert dirs[0].name.endswith(f"-f{FORMAT}-b1")
    assert b.manifest["model_hash"] == model_hash(model)
    make_backend("onnxruntime", model, 1, warn=pytest.fail)  # reused, not exported again
    assert list((tmp_path / "onnx").iterdir()) == dirs


# -- fallbacks and availability ----------------------------------------------------------


def test_available_backends_on_cpu():
    av = available_backends("cpu")
    assert list(av) == list(BACKENDS)
    assert av["torch"] is None and av["onnxruntime"] is None
    assert "CUDA" in av["tensorrt"]
    if not torch.cuda.is_available():
        assert all("no CUDA GPU" in why for why in available_backends("cuda").values())


def test_missing_onnxruntime_falls_back_to_torch(monkeypatch):
    monkeypatch.setattr(registry, "_installed", lambda package: package != "onnxruntime")
    warnings = []
    b = make_backend("onnxruntime", micro(), 1, warn=warnings.append)
    assert b.name == "torch"
    assert "onnxruntime is not installed" in warnings[0] and "pip install onnxruntime" in warnings[0]


def test_tensorrt_falls_back_on_cpu(tmp_path):
    warnings = []
    b = make_backend("tensorrt", micro(), 1, cache_dir=tmp_path, warn=warnings.append)
    assert b.name == "onnxruntime"
    assert "backend 'tensorrt' cannot run here" in warnings[0] and "falling back to 'onnxruntime'" in warnings[0]


def test_no_backend_at_all_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: cuda is a valid device here")
    with pytest.raises(BackendUnavailable, match="backend 'torch' cannot run here"):
        make_backend("onnxruntime", micro(), 1, device="cuda", warn=lambda m: None)


# -- tensorrt (what runs without a GPU) --------------------------------------------------


def test_tensorrt_engine_cache_key():
    from engines.trt import engine_cache_key

    base = dict(model_hash="ab" * 32, trt_version="10.3.0", gpu_name="NVIDIA H100 80GB HBM3", precision="fp16",
                batch=1)
    key = engine_cache_key(**base)
    assert key == "abababababababab-trt10.3.0-nvidia-h100-80gb-hbm3-fp16-b1"
    for field, value in [("model_hash", "cd" * 32), ("trt_version", "10.4.0"), ("gpu_name", "NVIDIA L4"),
                         ("precision", "bf16"), ("batch", 2)]:
        assert engine_cache_key(**{**base, field: value}) != key, field
    assert engine_cache_key(**base, config_hash="12345678ff") != key
    assert engine_cache_key(**base, onnx_format=2) == "abababababababab-f2-trt10.3.0-nvidia-h100-80gb-hbm3-fp16-b1"
    assert engine_cache_key(**base, onnx_format=3) != engine_cache_key(**base, onnx_format=2)
    with pytest.raises(ValueError, match="precision"):
        engine_cache_key(**{**base, "precision": "int4"})


def test_tensorrt_unavailable_is_explained(tmp_path, tiny_model, tiny_onnx):
    from engines.trt import TensorRTBackend, import_tensorrt

    with pytest.raises(BackendUnavailable, match="CUDA GPU"):
        TensorRTBackend(tiny_model, tiny_onnx, 1, device="cpu")
    if registry._installed("tensorrt"):
        pytest.skip("tensorrt is installed here")
    with pytest.raises(BackendUnavailable, match="pip install"):
        import_tensorrt()


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to torch)")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.skipif(not registry._installed("tensorrt"), reason="needs tensorrt>=10 (pip install 'echo-infinity[gpu]')")
def test_tensorrt_parity_cuda(tmp_path):
    model = tiny().cuda()
    trt_backend = make_backend("tensorrt", model, 1, device="cuda", cache_dir=tmp_path, precision="fp32",
                               warn=pytest.fail)
    worst, _ = run_parity(model, TorchBackend(model), trt_backend, frames=50)
    assert_close(worst, tol=1e-2)  # TF32 matmuls


@pytest.mark.gpu
@needs_cuda
def test_compile_cuda_graphs_parity():
    model = tiny().cuda()
    b = make_backend("compile", model, 1, device="cuda", warn=pytest.fail)
    assert b.mode == "reduce-overhead"
    worst, _ = run_parity(model, TorchBackend(model), b, frames=50)
    assert_close(worst, tol=1e-2)


@pytest.mark.gpu
@needs_cuda
def test_onnxruntime_cuda_parity(tmp_path):
    if "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        pytest.skip("needs onnxruntime-gpu (CUDAExecutionProvider)")
    model = tiny().cuda()
    b = make_backend("onnxruntime", model, 1, device="cuda", cache_dir=tmp_path, providers=["CUDAExecutionProvider"],
                     warn=pytest.fail)
    worst, _ = run_parity(model, TorchBackend(model), b, frames=50)
    assert_close(worst, tol=1e-2)


# -- torch.compile on CPU ----------------------------------------------------------------


@pytest.mark.parametrize("prev_frame", [True, False], ids=["prev_frame", "no_prev_frame"])
def test_compile_captures_whole_graphs(prev_frame):
    """fullgraph capture of every graph (dynamo, no inductor codegen: seconds, not a minute)."""
    from engines.compiled import CompileBackend

    model = micro(prev_frame=prev_frame)
    b = CompileBackend(model, 1, compiler="eager")
    worst, _ = run_parity(model, TorchBackend(model), b, frames=8)
    assert_close(worst, tol=1e-6)


@pytest.mark.slow
def test_compile_inductor_parity_cpu():
    """Inductor's C++ kernels: about a minute of compilation on a 2-core machine."""
    model = tiny()
    b = make_backend("compile", model, 1, warn=pytest.fail)
    worst, _ = run_parity(model, TorchBackend(model), b, frames=50)
    assert_close(worst)


# -- CLI ----------------------------------------------------------------------------------


def test_cli_export_and_bad_inputs(tmp_path, capsys):
    micro().save(tmp_path / "ckpt")
    assert main(["export", "--checkpoint", str(tmp_path / "ckpt"), "--out", str(tmp_path / "onnx"),
                 "--batch", "2"]) == 0
    m = json.loads((tmp_path / "onnx" / "manifest.json").read_text())
    assert m["batch"] == 2 and m["checkpoint_file_sha256"] == m["model_hash"]
    assert (tmp_path / "onnx" / "dit_step.onnx").is_file() and (tmp_path / "onnx" / "decoder.onnx").is_file()
    micro("full").save(tmp_path / "full")
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(tmp_path / "full"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "policy 'full'" in err
    assert main(["export", "--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2


def test_cli_doctor(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "backends on cpu" in out
    assert main(["doctor", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backends"]["cpu"]["torch"] is None and "tensorrt" in info["backends"]["cuda"]


def test_cli_bench_backends(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--target", "backends", "--random-init", "--frames", "3", "--backends", "torch",
                 "onnxruntime", "tensorrt", "--cache-dir", str(tmp_path / "onnx"), "--json", str(out),
                 "--no-progress"]) == 0
    r = json.loads(out.read_text())
    assert set(r["backends"]) == {"torch", "onnxruntime", "tensorrt"}
    assert r["backends"]["tensorrt"]["backend"] == "onnxruntime"  # fell back, reported as asked
    assert r["backends"]["torch"]["ratio_fps"] == 1.0 and r["backends"]["onnxruntime"]["fps"] > 0
    assert "falling back" in capsys.readouterr().err
    # the share of the machine's matmul rate: fps x counted work / measured rate, per backend
    assert r["gflop_per_frame"] > 0.1 and r["machine_gemm_gflops"] > 0
    for res in r["backends"].values():
        want = res["fps"] * r["gflop_per_frame"] / r["machine_gemm_gflops"]
        assert 0 < res["matmul_share"] == pytest.approx(want, rel=0.02, abs=2e-3)
