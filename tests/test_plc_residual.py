"""The residual PLC model, its precomputed windows and its training."""

import numpy as np
import pytest
import torch
from conftest import voiced

from audiomae.audio import SAMPLES_PER_PACKET, save_audio
from audiomae.config import FeatureConfig, model_preset
from audiomae.masking import packet_loss_mask
from audiomae.model import AudioMAE, ResidualPLCMAE
from audiomae.train.config import TrainConfig
from audiomae.train.plc_pool import PoolSettings, SourceGroup, build_pool, load_pool
from audiomae.train.plc_residual import PoolDataset, ResidualPLCSettings, ResidualPLCTask, run_residual_plc


def _tiny() -> AudioMAE:
    cfg = model_preset("tiny", n_mels=80, enc_dim=32, enc_depth=1, dec_dim=32, dec_depth=1, max_frames=64)
    torch.manual_seed(0)
    return AudioMAE(cfg, features=FeatureConfig())


def test_residual_model_starts_as_the_continuation_and_loads_back(tmp_path):
    mae = _tiny()
    model = ResidualPLCMAE.from_mae(mae)
    for name, p in mae.state_dict().items():
        if not name.startswith("dec_pred."):
            torch.testing.assert_close(model.state_dict()[name], p)
    spec = torch.randn(2, 80, 48)
    lost = torch.zeros(2, 24, dtype=torch.bool)
    lost[:, 18:21] = True
    mask = packet_loss_mask(lost, model.cfg.grid_f)
    # A zero head: the prediction is the input (the concealer's continuation) itself.
    torch.testing.assert_close(model.reconstruct(spec, mask), spec)
    with torch.no_grad():
        model.dec_pred.bias.normal_()
    full = model.reconstruct(spec, mask)
    # Received columns are kept, lost ones corrected; predicting only some columns gives the same.
    torch.testing.assert_close(full[..., :36], spec[..., :36])
    assert not torch.allclose(full[..., 36:42], spec[..., 36:42])
    torch.testing.assert_close(model.reconstruct(spec, mask, (16, 22)), full)
    model.save_pretrained(tmp_path / "m")
    back = AudioMAE.from_pretrained(tmp_path / "m")
    assert isinstance(back, ResidualPLCMAE)
    torch.testing.assert_close(back.reconstruct(spec, mask), full)


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    for i in range(3):
        save_audio(root / "audio" / f"v{i}.wav", voiced(1.5, f0=110 + 30 * i, seed=i) * 0.3)
    group = SourceGroup(name="voiced", path=str(root / "audio"))
    s = PoolSettings(groups=(group,), n_windows=12, shard_size=6, windows_per_visit=2, seed=1)
    build_pool(s, root / "train", progress=False)
    build_pool(
        PoolSettings(groups=(group,), n_windows=6, shard_size=6, augment=0.0), root / "dev", progress=False
    )
    return root


def test_pool_holds_what_the_mae_free_concealer_plays(pools):
    from audiomae.features import LogMel
    from audiomae.plc import conceal
    from audiomae.train.plc_pool import conceal_window

    pool = load_pool(pools / "train")
    assert pool["clean"].shape == pool["played"].shape == (12, 80, 48)
    assert pool["lost"].shape == (12, 24) and pool["lost"].any(axis=1).all()
    # Received columns away from any loss match the clean log-mel (both from the same audio).
    played, clean = pool["played"].astype(np.float32), pool["clean"].astype(np.float32)
    lost = pool["lost"]
    i, t = next((i, t) for i in range(12) for t in range(2, 22) if not lost[i, t - 2 : t + 3].any())
    np.testing.assert_allclose(played[i, :, 2 * t : 2 * t + 2], clean[i, :, 2 * t : 2 * t + 2], atol=0.05)
    # conceal_window is the lpc concealer run over preroll + window.
    wave = voiced(0.64)
    flags = np.zeros(24, bool)
    flags[20:23] = True
    heard = conceal_window(wave, flags, 0, preroll=8, concealers={})
    full = conceal(
        wave * ~np.repeat(np.r_[np.zeros(8, bool), flags], SAMPLES_PER_PACKET),
        np.r_[np.zeros(8, bool), flags],
        "lpc",
    )
    np.testing.assert_array_equal(heard, full[8 * SAMPLES_PER_PACKET :])
    assert LogMel(FeatureConfig()).cfg.n_mels == 80
    with pytest.raises(ValueError, match="unknown groups"):
        load_pool(pools / "train", groups=["nope"])


def test_burst_positions_and_their_weights():
    from audiomae.masking import burst_position
    from audiomae.train.plc_residual import position_weight

    lost = torch.tensor([[0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    pos = burst_position(lost)
    assert pos.tolist() == [[0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8]]
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):  # against the plain running count
        lost = torch.rand(3, 30, generator=gen) < 0.6
        run, want = torch.zeros(3, dtype=torch.long), []
        for t in range(30):
            run = (run + 1) * lost[:, t]
            want.append(run)
        assert torch.equal(burst_position(lost), torch.stack(want, 1))
    w = position_weight(pos)
    assert w[0, 0] == 0 and w[0, 1] == w[0, 6] == 1 and w[0, 7] < 1 and w[0, 11] < w[0, 7]


def test_objective_counts_loud_bands_and_level():
    model = ResidualPLCMAE.from_mae(_tiny())
    task = ResidualPLCTask(model)
    clean = torch.full((1, 80, 4), -12.0)
    clean[:, 10:20] = 0.0  # a loud formant region
    clean = model.norm.normalize(clean)
    off_loud, off_quiet = clean.clone(), clean.clone()
    off_loud[:, 10:20] += 0.5
    off_quiet[:, 40:50] += 0.5
    loud, mse_loud = task._frame_errors(off_loud, clean)
    quiet, mse_quiet = task._frame_errors(off_quiet, clean)
    torch.testing.assert_close(mse_loud, mse_quiet)  # plain MSE cannot tell them apart
    assert (loud > 3 * quiet).all()


def test_residual_training_step_has_gradients_and_validation_names_the_baseline(pools):
    model = ResidualPLCMAE.from_mae(_tiny())
    ds = PoolDataset(load_pool(pools / "train"))
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    task = ResidualPLCTask(model, target_weight=2.0)
    figures = task.validation_step(batch)
    # Zero correction: the model's error is the continuation's.
    assert figures["loss"] == pytest.approx(figures["continuation"])
    assert figures["early"] == pytest.approx(figures["early_continuation"])
    assert figures["mse"] == pytest.approx(figures["mse_continuation"])
    loss, _ = task.training_step(batch, 0)
    loss.backward()
    assert model.dec_pred.weight.grad.abs().sum() > 0


def test_residual_runs_accumulate_in_stages(pools, tmp_path):
    mae = _tiny()
    mae.save_pretrained(tmp_path / "init")
    train = TrainConfig(steps=3, batch_size=4, lr=1e-3, log_every=1, tensorboard=False, progress=False)
    s = ResidualPLCSettings(
        pool=str(pools / "train"),
        val_pool=str(pools / "dev"),
        init=str(tmp_path / "init"),
        out_dir=str(tmp_path / "run"),
        export=str(tmp_path / "export"),
        threads=None,
        train=train,
    )
    first = run_residual_plc(s)
    assert (tmp_path / "run" / "stage_000" / "model").is_dir() and first.steps == 3
    run_residual_plc(s)  # a second stage, from the first one's model
    assert (tmp_path / "run" / "stage_001" / "model").is_dir()
    exported = AudioMAE.from_pretrained(tmp_path / "export")
    assert isinstance(exported, ResidualPLCMAE)
    from audiomae.checkpoint import read_config

    assert read_config(tmp_path / "export")["extra"]["residual_plc"]["start"].endswith("stage_000/model")


def test_residual_runner_joins_the_process_group_and_trains_with_its_settings(pools, tmp_path, monkeypatch):
    """The objective's settings reach the task that trains (not only evaluation), the runner
    joins torchrun's process group, and each rank draws its own level shifts."""
    from types import SimpleNamespace

    import audiomae.train.loop as loop
    from audiomae.train import distributed as dist_utils
    from audiomae.train.task import derive_seed

    _tiny().save_pretrained(tmp_path / "init")
    joined, trained = [], []
    monkeypatch.setattr(dist_utils, "init_distributed", lambda: joined.append(1) or dist_utils.DistInfo())
    monkeypatch.setattr(loop, "fit", lambda task, *a, **k: trained.append(task) or SimpleNamespace(steps=0))
    s = ResidualPLCSettings(
        pool=str(pools / "train"),
        val_pool=None,
        init=str(tmp_path / "init"),
        out_dir=str(tmp_path / "run"),
        threads=None,
        energy_gamma=1.5,
        level_weight=0.25,
        context_weight=0.5,
        train=TrainConfig(steps=1, batch_size=4, tensorboard=False, progress=False),
    )
    run_residual_plc(s)
    (task,) = trained
    assert joined == [1]
    assert (task.energy_gamma, task.level_weight, task.context_weight) == (1.5, 0.25, 0.5)
    ds = PoolDataset(load_pool(pools / "train"))
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    seeds = {}
    errors = task._errors
    for rank in (0, 1):
        monkeypatch.setattr(dist_utils, "rank", lambda rank=rank: rank)
        monkeypatch.setattr(
            task,
            "_errors",
            lambda b, gen, rank=rank: seeds.setdefault(rank, gen.initial_seed()) and errors(b, gen),
        )
        task.training_step(batch, 3)
    assert seeds[0] == derive_seed(task.seed, 3) != seeds[1]


def test_concealer_feeds_a_residual_model_what_it_was_trained_on():
    """With a zero correction the residual model's log-mel is the continuation's own, so the
    MAE concealer with it plays what the MAE-free one plays wherever the MAE is not used."""
    from audiomae.plc import conceal
    from audiomae.plc.mae import LPC_DEFAULTS, ConcealerConfig, MAEConcealer

    model = ResidualPLCMAE.from_mae(AudioMAE.from_preset("tiny", max_frames=64))
    x = voiced(1.0)
    lost = np.zeros(50, bool)
    lost[[10, 20, 21, 22]] = True
    lossy = np.where(np.repeat(lost, SAMPLES_PER_PACKET), 0, x).astype(np.float32)
    seen = []

    class Spy(MAEConcealer):
        def predict_logmel(self, wave, lost, columns=None):
            seen.append(wave.copy())
            return super().predict_logmel(wave, lost, columns)

    cfg = ConcealerConfig(full_level_packets=LPC_DEFAULTS["full_level_packets"], int8=False)
    y = conceal(lossy, lost, Spy(model, config=cfg))
    assert np.isfinite(y).all() and seen
    # The window holds played audio, not zeros, at the earlier lost packets.
    assert all(np.abs(w[-3 * SAMPLES_PER_PACKET : -SAMPLES_PER_PACKET]).max() > 0 for w in seen)


@pytest.mark.parametrize("lookahead", [0, 1])
def test_a_zero_correction_plays_what_lpc_plays(lookahead):
    """The residual model's correction scales the continuation's bands: with none (the head at
    its zero start) the MAE concealer's output is the MAE-free concealer's."""
    from audiomae.plc import conceal
    from audiomae.plc.mae import LPC_DEFAULTS, ConcealerConfig, MAEConcealer

    model = ResidualPLCMAE.from_mae(AudioMAE.from_preset("tiny", max_frames=64))
    x = voiced(1.2)
    lost = np.zeros(60, bool)
    lost[[8, 20, 21, 22, 35, 40, 41, 42, 43, 44, 45, 46, 47]] = True
    lossy = np.where(np.repeat(lost, SAMPLES_PER_PACKET), 0, x).astype(np.float32)
    cfg = ConcealerConfig(full_level_packets=LPC_DEFAULTS["full_level_packets"], mae_from_packet=1)
    y = conceal(lossy, lost, MAEConcealer(model, lookahead=lookahead, config=cfg))
    ref = conceal(lossy, lost, "lpc", lookahead=lookahead)
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_correction_is_the_same_in_numpy_and_torch():
    from audiomae.plc.mae import PitchGuidedRenderer
    from audiomae.runtime.render import PitchGuidedRenderer as NumpyRenderer

    rng = np.random.default_rng(0)
    guide = (rng.standard_normal(1760) * 0.1).astype(np.float32)
    zero = np.zeros((1, 80, 11), np.float32)
    delta = (rng.standard_normal((1, 80, 11)) * 0.5).astype(np.float32)
    delta[..., :6] = delta[..., 9:] = 0
    for renderer in (PitchGuidedRenderer(n_iter=0), NumpyRenderer(n_iter=0)):
        np.testing.assert_allclose(renderer.correct(zero, 6, 9, guide), guide[960:1440], atol=1e-6)
    a = PitchGuidedRenderer(n_iter=0, gain_groups=None).correct(delta, 6, 9, guide)
    b = NumpyRenderer(n_iter=0, gain_groups=None).correct(delta, 6, 9, guide)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.abs(a - guide[960:1440]).max() > 1e-3


def test_recorded_windows_are_what_the_streaming_concealer_asks(tmp_path):
    """Recorded windows: received columns far from a loss hold the clean signal, lost columns
    the concealer's own continuation, the target is the window's last lost packet before its
    lookahead, the exclusions hold, and a shard is the same when recorded again."""
    from audiomae.train.plc_record import RecordSettings, record_pool

    for i in range(4):
        save_audio(tmp_path / "audio" / f"v{i}.wav", voiced(2.0, f0=100 + 25 * i, seed=i) * 0.3)
    model = ResidualPLCMAE.from_mae(AudioMAE.from_preset("tiny", max_frames=64))
    model.save_pretrained(tmp_path / "model")
    group = SourceGroup(name="voiced", path=str(tmp_path / "audio"))
    held_out = SourceGroup(name="out", path=str(tmp_path / "audio"), every=4, count=1)
    s = RecordSettings(
        groups=(group,),
        exclude=(held_out,),
        model=str(tmp_path / "model"),
        n_windows=16,
        shard_size=8,
        seconds=2.0,
        augment=0.0,
        rate=(0.15, 0.25),
        burst=(1.5, 2.5),
    )
    record_pool(s, tmp_path / "a", progress=False)
    pool = load_pool(tmp_path / "a")
    assert pool["clean"].shape == pool["played"].shape == (16, 80, 48)
    lost, target, la = pool["lost"], pool["target"].astype(int), pool["lookahead"].astype(int)
    assert (target == 23 - np.maximum(la, 1)).all()
    assert lost[np.arange(16), target].all()
    clean, played = pool["clean"].astype(np.float32), pool["played"].astype(np.float32)
    frames = np.repeat(lost, 2, axis=1)
    near = np.zeros_like(frames)
    for d in range(-4, 5):  # analysis windows that reach a lost packet
        near |= np.roll(frames, d, axis=1)
    far = ~near
    far[:, -6:] = False  # the window's end: what follows it is unknown to the concealer
    assert np.abs(clean - played).mean(axis=1)[far].max() < 0.05
    assert np.abs(clean - played).mean(axis=1)[frames].mean() > 0.2
    import json

    meta = json.loads((tmp_path / "a" / "pool.json").read_text())
    assert meta["groups"][0]["files"] == 3  # one of the four kept out
    s2 = RecordSettings(**{**s.__dict__, "n_windows": 8})
    record_pool(s2, tmp_path / "b", progress=False)
    again = load_pool(tmp_path / "b")
    assert np.array_equal(again["played"], pool["played"][:8]) and np.array_equal(again["lost"], lost[:8])


def test_level_calibration_removes_the_mean_level_error_and_travels_in_the_config(pools, tmp_path):
    """calibrate_levels measures the prediction's mean level error per burst position on
    training windows and subtracts it: afterwards the error's mean is zero at every position
    with enough targets; the offset is saved in the JSON config, loads back, reaches the ONNX
    export's graph, and a bad one is refused."""
    from audiomae.train.plc_residual import calibrate_levels, level_bias

    model = ResidualPLCMAE.from_mae(_tiny())
    with torch.no_grad():
        model.dec_pred.bias.fill_(0.3)  # a model that plays every lost column too loud
    pool = load_pool(pools / "train")
    before = level_bias(model, pool)
    offset, _ = calibrate_levels(model, pool, min_count=1, scale=False)
    after = level_bias(model, pool)
    seen = before[:, 1] > 0
    assert (np.abs(before[seen, 0]) > 0.1).all()
    np.testing.assert_allclose(after[seen, 0], 0.0, atol=1e-4)
    np.testing.assert_allclose(offset[seen], before[seen, 0], rtol=1e-5)
    model.save_pretrained(tmp_path / "m")
    back = AudioMAE.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(back.level_offset, model.level_offset)
    spec = torch.from_numpy(pool["played"][:2].astype(np.float32))
    mask = packet_loss_mask(torch.from_numpy(pool["lost"][:2]), model.cfg.grid_f)
    norm = model.norm.normalize(spec)
    torch.testing.assert_close(back.reconstruct(norm, mask), model.reconstruct(norm, mask))
    part = model.reconstruct(norm, mask, (16, 24))[..., 32:]
    torch.testing.assert_close(part, model.reconstruct(norm, mask)[..., 32:])
    with pytest.raises(ValueError, match="level_offset"):
        ResidualPLCMAE(model.cfg, level_offset=[0.0] * 3)
    with pytest.raises(ValueError, match="finite"):
        ResidualPLCMAE(model.cfg, level_offset=[float("nan")] * 8)


def test_fitted_level_scale_is_never_worse_than_the_model_or_the_continuation(pools, tmp_path):
    """With a slope per burst position, the calibrated level's squared error on the windows it
    was fitted on is at most the uncalibrated model's and the continuation's (slope 0) at every
    position; slope and offset travel in the JSON config."""
    from audiomae.train.plc_residual import calibrate_levels, level_pairs

    torch.manual_seed(3)
    model = ResidualPLCMAE.from_mae(_tiny())
    with torch.no_grad():
        torch.nn.init.normal_(model.dec_pred.weight, std=0.2)  # a head with noisy level changes
    pool = load_pool(pools / "train")
    before = level_pairs(model, pool)
    offset, scale = calibrate_levels(model, pool, min_count=1)
    after = level_pairs(model, pool)
    assert not np.allclose(scale, 1.0)
    for p in np.unique(before["pos"]):
        at = before["pos"] == p
        truth = before["truth"][at]
        model_err = float(np.mean((before["change"][at] - truth) ** 2))
        fit_err = float(np.mean((after["change"][at] - truth) ** 2))
        assert fit_err <= model_err + 1e-4 and fit_err <= float(np.mean(truth**2)) + 1e-4
        expected = scale[p - 1] * before["change"][at] - offset[p - 1]
        np.testing.assert_allclose(after["change"][at], expected, atol=1e-3)
    model.save_pretrained(tmp_path / "m")
    back = AudioMAE.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(back.level_scale, model.level_scale)
    torch.testing.assert_close(back.level_offset, model.level_offset)
    with pytest.raises(ValueError, match="level_scale"):
        ResidualPLCMAE(model.cfg, level_scale=[1.0] * 2)


def test_bundled_residual_model_loads_and_corrects():
    """The bundled residual model (the recorded-pool recipe's starting point) loads as a
    ResidualPLCMAE from safetensors + JSON and changes lost columns only."""
    from importlib.resources import files

    model = AudioMAE.from_pretrained(files("audiomae") / "assets" / "plc_residual_speech").eval()
    assert isinstance(model, ResidualPLCMAE)
    lost = torch.zeros(1, 24, dtype=torch.bool)
    lost[0, 16:18] = True
    spec = torch.randn(1, model.cfg.n_mels, 24 * model.cfg.patch_t)
    with torch.no_grad():
        out = model.reconstruct(spec, packet_loss_mask(lost, model.cfg.grid_f))
    fpp = model.cfg.patch_t
    torch.testing.assert_close(out[..., : 16 * fpp], spec[..., : 16 * fpp])
    assert not torch.allclose(out[..., 16 * fpp : 18 * fpp], spec[..., 16 * fpp : 18 * fpp])
