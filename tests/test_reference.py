"""Checkpoints of the original Audio-MAE code: safe reading, conversion, and forward parity with
the reference code's outputs on random weights (fixtures and how they were made:
tests/data/README.md)."""

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from audiomae.classify import AudioClassifier
from audiomae.cli import main as cli_main
from audiomae.kaldi import fix_frames
from audiomae.model import AudioMAE
from audiomae.reference import audioset_labels, convert_file, convert_reference, read_reference

DATA = Path(__file__).parent / "data" / "reference"
TOL = 1e-4  # fp32, reference code vs this project's modules


def _fixtures_module():
    spec = importlib.util.spec_from_file_location("make_fixtures", DATA / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(name: str) -> dict:
    with np.load(DATA / name) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def clip():
    return load("kaldi_fbank.npz")


def reference_input(clip, frames: int, encoder: AudioMAE) -> torch.Tensor:
    """dataset.py's input from torchaudio's fbank: pad / cut, then the AudioSet normalisation."""
    fbank = torch.from_numpy(clip["fbank_a"]).T[None]
    return encoder.norm.normalize(fix_frames(fbank, frames))


def reference_pos_embed(dim: int, grid: tuple[int, int]) -> np.ndarray:
    """util/pos_embed.py get_2d_sincos_pos_embed_flexible(dim, grid, cls_token=True), in numpy."""

    def embed_1d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gw, gh = np.meshgrid(np.arange(grid[1], dtype=np.float32), np.arange(grid[0], dtype=np.float32))
    emb = np.concatenate([embed_1d(dim // 2, gw), embed_1d(dim // 2, gh)], axis=1)
    return np.concatenate([np.zeros([1, dim]), emb], axis=0).astype(np.float32)[None]


# ---- parity ----------------------------------------------------------------------------------
def test_tiny_finetuned_parity(clip):
    ref = read_reference(DATA / "tiny_finetuned.pth")  # {'model', 'epoch', 'args': Namespace}
    assert ref.args["dataset"] == "audioset"
    model = convert_reference(ref, num_heads=2).model
    assert isinstance(model, AudioClassifier) and model.cfg.multilabel
    expected = load("tiny_finetuned.npz")
    with torch.no_grad():
        out = model(reference_input(clip, 256, model.encoder))
        features = model.head_norm(out.features)  # the reference's forward_features: after fc_norm
    assert np.abs(features[0].numpy() - expected["features"]).max() < TOL
    assert np.abs(out.logits[0].numpy() - expected["logits"]).max() < TOL
    # From the waveform, through this project's Kaldi front end.
    probs = model.predict_proba(torch.from_numpy(clip["wave_a"]))
    assert np.abs(probs[0].numpy() - expected["probs"]).max() < TOL
    assert model.labels == audioset_labels() and len(model.labels) == 527
    assert model.labels[0] == "Speech"
    top = model.predict(torch.from_numpy(clip["wave_a"]), top_k=2)[0]
    assert [label for label, _ in top] == [model.labels[i] for i in np.argsort(-expected["probs"])[:2]]


def test_tiny_pretrained_parity(clip):
    conv = convert_reference(read_reference(DATA / "tiny_pretrained.pth"), num_heads=2)
    encoder = conv.model
    assert isinstance(encoder, AudioMAE) and encoder.decoder is None
    assert any("Swin-local decoder" in note for note in conv.notes)
    with torch.no_grad():
        tokens = encoder.encode(reference_input(clip, 1024, encoder))
    assert np.abs(tokens[0].numpy() - load("tiny_pretrained.npz")["tokens"]).max() < TOL
    with pytest.raises(ValueError, match="encoder only"):
        encoder.reconstruct(torch.zeros(1, 128, 1024), None)


def test_positional_tables_are_the_references():
    # The stored tables are what reference pretraining computes (over a (W, H)-listed grid).
    for name, grid in (("tiny_finetuned.pth", (8, 16)), ("tiny_pretrained.pth", (8, 64))):
        pos = read_reference(DATA / name).state["pos_embed"].numpy()
        assert np.abs(pos - reference_pos_embed(64, grid)).max() < 1e-6


def test_base_finetuned_parity(tmp_path, clip):
    """The reference's ViT-B/16 fine-tuned on AudioSet (1024 x 128, stride-16 patches), random
    weights from the fixture's seed, as a finetuned.pth: convert-reference, then
    AudioClassifier.from_pretrained(DIR).predict_proba(waveform) against the reference's sigmoid."""
    expected = load("base_finetuned.npz")
    shapes = [
        (str(n), tuple(int(d) for d in s.split(","))) for n, s in zip(expected["names"], expected["shapes"])
    ]
    state = {
        k: torch.from_numpy(v)
        for k, v in _fixtures_module().random_state(shapes, int(expected["seed"])).items()
    }
    state["pos_embed"] = torch.from_numpy(reference_pos_embed(768, (8, 64)))
    args = argparse.Namespace(model="vit_base_patch16", dataset="audioset", nb_classes=527)
    torch.save({"model": state, "epoch": 59, "args": args}, tmp_path / "finetuned.pth")
    del state
    convert_file(tmp_path / "finetuned.pth", tmp_path / "converted")
    model = AudioClassifier.from_pretrained(tmp_path / "converted")
    assert model.encoder.cfg.enc_heads == 12 and model.encoder.cfg.max_frames == 1024
    with torch.no_grad():
        out = model(reference_input(clip, 1024, model.encoder))
        features = model.head_norm(out.features)
    assert np.abs(out.logits[0].numpy() - expected["logits"]).max() < TOL
    assert np.abs(features[0].numpy() - expected["features"]).max() < TOL
    probs = model.predict_proba(torch.from_numpy(clip["wave_a"]))
    assert np.abs(probs[0].numpy() - expected["probs"]).max() < TOL


# ---- command line and checkpoints -----------------------------------------------------------
def test_convert_command_and_classify(tmp_path, clip, capsys):
    import soundfile as sf

    out = tmp_path / "ft"
    assert (
        cli_main(["convert-reference", str(DATA / "tiny_finetuned.pth"), "-o", str(out), "--heads", "2"]) == 0
    )
    assert "527 classes" in capsys.readouterr().out
    model = AudioClassifier.from_pretrained(out)
    probs = model.predict_proba(torch.from_numpy(clip["wave_a"]))
    assert np.abs(probs[0].numpy() - load("tiny_finetuned.npz")["probs"]).max() < TOL
    wav = tmp_path / "clip.wav"
    sf.write(wav, clip["wave_a"], 16000, subtype="FLOAT")
    assert cli_main(["classify", str(out), str(wav), "--top-k", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(wav)) and len(line.split("\t")) == 3

    enc = tmp_path / "pt"
    assert (
        cli_main(["convert-reference", str(DATA / "tiny_pretrained.pth"), "-o", str(enc), "--heads", "2"])
        == 0
    )
    assert "Swin-local decoder" in capsys.readouterr().out
    encoder = AudioMAE.from_pretrained(enc)
    assert encoder.cfg.cls_token and encoder.feature_cfg.frontend == "kaldi"


def test_finetune_from_converted_encoder(tmp_path):
    from audiomae.classify import FinetuneSettings, run_finetune
    from audiomae.train import TrainConfig

    enc = tmp_path / "pt"
    convert_file(DATA / "tiny_pretrained.pth", enc, num_heads=2)
    settings = FinetuneSettings(
        encoder=str(enc),
        head_norm="layer",
        train=TrainConfig(steps=2, batch_size=4, progress=False, tensorboard=False, precision="fp32", seed=0),
        out_dir=str(tmp_path / "run"),
        threads=1,
    )
    out = run_finetune(settings)
    assert out["result"].steps == 2
    model = AudioClassifier.from_pretrained(tmp_path / "run" / "model")
    assert model.encoder.cfg.cls_token and model.cfg.head_norm == "layer"


# ---- refusals ---------------------------------------------------------------------------------
class _OpensAFile:
    """A pickle payload: unpickling it calls open(path, "w"), creating the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_code_in_pickle_is_refused(tmp_path, capsys):
    target = tmp_path / "created_by_payload"
    bad = tmp_path / "bad.pth"
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 4)}, "args": _OpensAFile(target)}, bad)
    # The payload is live: unrestricted unpickling runs it.
    torch.load(bad, weights_only=False)["args"].close()
    assert target.exists()
    target.unlink()
    with pytest.raises(ValueError, match="refused: its pickle asks for io.open") as info:
        read_reference(bad)
    assert "\n" not in str(info.value)
    assert cli_main(["convert-reference", str(bad), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and len(err.strip().splitlines()) == 1
    assert not target.exists() and not (tmp_path / "out").exists()


def _state(name: str) -> dict:
    return dict(read_reference(DATA / name).state)


def test_unsupported_layouts_are_refused(tmp_path):
    from audiomae.reference import ReferenceCheckpoint

    def convert(state, **kw):
        return convert_reference(ReferenceCheckpoint(path=tmp_path / "x.pth", state=state), num_heads=2, **kw)

    state = _state("tiny_finetuned.pth")
    overlapping = dict(state, pos_embed=torch.zeros(1, 1213, 64))  # use_custom_patch: stride 10
    with pytest.raises(ValueError, match="overlapping patches"):
        convert(overlapping)
    cls_readout = {k: v for k, v in state.items() if not k.startswith("fc_norm")}
    cls_readout.update({"norm.weight": torch.ones(64), "norm.bias": torch.zeros(64)})
    with pytest.raises(ValueError, match="CLS token"):
        convert(cls_readout)
    with pytest.raises(ValueError, match="does not know"):
        convert(dict(state, extra_tensor=torch.zeros(3)))
    with pytest.raises(ValueError, match="--heads"):  # 64 wide: no reference ViT to take it from
        convert_reference(ReferenceCheckpoint(path=tmp_path / "x.pth", state=state))
    with pytest.raises(ValueError, match="wrong --heads"):
        convert(dict(state, **{"blocks.0.attn.qkv.weight": torch.zeros(10, 64)}))
    with pytest.raises(ValueError, match="no cls_token"):
        convert({"head.weight": torch.zeros(2, 2)})
    not_pth = tmp_path / "junk.pth"
    not_pth.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a torch checkpoint"):
        read_reference(not_pth)


def test_cls_token_encoder_options():
    """The options a converted encoder uses, on a small model: a ragged batch equals its items
    (padded keys hidden from the CLS token too), and every parameter gets a gradient."""
    from audiomae.config import ModelConfig
    from audiomae.masking import from_bool_mask

    cfg = ModelConfig(
        n_mels=32, max_frames=32, patch_f=16, patch_t=4, enc_dim=32, enc_depth=1, enc_heads=2,
        dec_depth=0, cls_token=True, pos_embed="stored", norm_eps=1e-6, final_norm=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AudioMAE(cfg).eval()
    model.enc_pos.normal_()
    spec = torch.randn(2, 32, 32)
    hidden = torch.zeros(2, 16, dtype=torch.bool)
    hidden[0, :10] = True  # item 0 keeps 6 patches, item 1 all 16: a ragged batch
    mask = from_bool_mask(hidden)
    assert mask.ragged
    with torch.no_grad():
        batched = model.encode(spec, mask)
        for i, keep in enumerate((6, 16)):
            alone = model.encode(spec[i : i + 1], from_bool_mask(hidden[i : i + 1]))
            assert torch.allclose(batched[i, :keep], alone[0], atol=1e-5)
    model.encode(spec)[:, :3].sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert {"cls_token", "enc_pos"} <= set(model.state_dict()) and "enc_norm.weight" not in model.state_dict()


def test_layer_decay_puts_cls_token_with_the_patch_embedding():
    model = convert_reference(read_reference(DATA / "tiny_finetuned.pth"), num_heads=2).model
    groups = model.param_groups(base_lr=1.0, weight_decay=0.05, layer_decay=0.5)
    (group,) = [g for g in groups if any(p is model.encoder.cls_token for p in g["params"])]
    assert group["layer"] == 0 and group["weight_decay"] == 0.0
