"""Tampered checkpoints: one reader validates before it allocates.

Every variant below must fail as a single-line ValueError (FileNotFoundError for a missing
file) naming the checkpoint's file and, where it is a field, the field; never another exception
type, a hang or a large allocation; and ``audiomae info`` must report it the same way.
"""

import json
import os
import struct

import pytest
import torch

from audiomae.checkpoint import inspect_checkpoint, load_model, save_checkpoint
from audiomae.cli import main
from audiomae.config import ModelConfig
from audiomae.features import NormStats
from audiomae.model import AudioMAE


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    cfg = ModelConfig(
        enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=1, dec_heads=2, max_frames=32
    )
    path = tmp_path_factory.mktemp("ck") / "good"
    AudioMAE(cfg, norm=NormStats(mean=-11.5, std=4.5)).save_pretrained(path)
    return path


def _set(key_path, value):
    def edit(cfg):
        node = cfg
        *parents, last = key_path.split(".")
        for k in parents:
            node = node[k]
        node[last] = value

    return edit


def _delete(key_path):
    def edit(cfg):
        node = cfg
        *parents, last = key_path.split(".")
        for k in parents:
            node = node[k]
        del node[last]

    return edit


CONFIG_EDITS = {
    "model-null": (_set("model", None), "model"),
    "model-list": (_set("model", [1, 2]), "model"),
    "features-string": (_set("features", "x"), "features"),
    "norm-missing": (_delete("norm"), "norm"),
    "model-missing": (_delete("model"), "model"),
    "kind-number": (_set("kind", 5), "kind"),
    "kind-unknown": (_set("kind", "nope"), "kind"),
    "kind-missing": (_delete("kind"), "kind"),
    "version-string": (_set("format_version", "1"), "format_version"),
    "version-float": (_set("format_version", 1.0), "format_version"),
    "version-bool": (_set("format_version", True), "format_version"),
    "version-zero": (_set("format_version", 0), "format_version"),
    "version-future": (_set("format_version", 99), "newer"),
    "version-missing": (_delete("format_version"), "format_version"),
    "sha-missing": (_delete("weights_sha256"), "weights_sha256"),
    "sha-null": (_set("weights_sha256", None), "weights_sha256"),
    "sha-short": (_set("weights_sha256", "abc"), "weights_sha256"),
    "sha-number": (_set("weights_sha256", 12), "weights_sha256"),
    "sha-wrong": (_set("weights_sha256", "0" * 64), "checksum"),
    "n_mels-string": (_set("model.n_mels", "80"), "model.n_mels"),
    "n_mels-float": (_set("model.n_mels", 80.5), "model.n_mels"),
    "enc_dim-bool": (_set("model.enc_dim", True), "model.enc_dim"),
    "enc_dim-negative": (_set("model.enc_dim", -32), "model"),
    "enc_dim-changed": (_set("model.enc_dim", 64), "patch_embed"),
    "enc_dim-huge": (_set("model.enc_dim", 1 << 20), "config.json"),
    "enc_depth-huge": (_set("model.enc_depth", 10**9), "larger than"),
    "enc_depth-zero": (_set("model.enc_depth", 0), "enc_depth"),
    "dec_window-negative": (_set("model.dec_window", -5), "dec_window"),
    "enc_heads-zero": (_set("model.enc_heads", 0), "config.json"),
    "max_frames-huge": (_set("model.max_frames", 1 << 40), "larger than"),
    "patch_f-zero": (_set("model.patch_f", 0), "config.json"),
    "mlp_ratio-string": (_set("model.mlp_ratio", "4"), "model.mlp_ratio"),
    "mlp_ratio-nan": (_set("model.mlp_ratio", float("nan")), "model.mlp_ratio"),
    "mlp_ratio-inf": (_set("model.mlp_ratio", float("inf")), "model.mlp_ratio"),
    "dec_window-list": (_set("model.dec_window", [8]), "model.dec_window"),
    "model-unknown-field": (_set("model.evil", 1), "evil"),
    "n_fft-huge": (_set("features.n_fft", 1 << 30), "n_fft"),
    "n_fft-string": (_set("features.n_fft", "512"), "features.n_fft"),
    "sample_rate-zero": (_set("features.sample_rate", 0), "sample_rate"),
    "hop-zero": (_set("features.hop_length", 0), "hop_length"),
    "f_max-string": (_set("features.f_max", "8000"), "features.f_max"),
    "features-n_mels-mismatch": (_set("features.n_mels", 64), "n_mels"),
    "f_min-above-nyquist": (_set("features.f_min", 9000.0), "f_min"),
    "norm-std-zero": (_set("norm.std", 0.0), "std"),
    "norm-std-huge": (_set("norm.std", 1e300), "std"),
    "norm-mean-huge": (_set("norm.mean", -1e30), "mean"),
    "norm-std-nan": (_set("norm.std", float("nan")), "norm.std"),
    "norm-std-negative": (_set("norm.std", -1.0), "std"),
    "norm-std-missing-null": (_set("norm.std", None), "norm.std"),
    "norm-mean-string": (_set("norm.mean", "0"), "norm.mean"),
    "norm-unknown-field": (_set("norm.scale", 2.0), "scale"),
    "norm-null": (_set("norm", None), "norm"),
}

RAW_CONFIGS = {
    "not-json": (b"{not json", "corrupt"),
    "truncated": (b'{"format_version": 1, "kind": "aud', "corrupt"),
    "deeply-nested": (b'{"format_version": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
    "a-list": (b"[1, 2, 3]", "format_version"),
    "a-string": (b'"checkpoint"', "format_version"),
    "empty": (b"", "corrupt"),
    "not-utf8": (b'{"format_version": 1, "kind": "\xff\xfe"}', "corrupt"),
    "too-large": (b'{"format_version": 1, "pad": "' + b"x" * (5 << 20) + b'"}', "bytes"),
}


def _copy(good, dst):
    dst.mkdir()
    for name in ("config.json", "model.safetensors"):
        (dst / name).write_bytes((good / name).read_bytes())
    return dst


def _check_fails(path, words, capsys):
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert str(path) in message, message
    for w in words:
        assert w in message, message
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err, err


@pytest.mark.parametrize("name", sorted(CONFIG_EDITS))
def test_tampered_config_fields(good, tmp_path, capsys, name):
    edit, word = CONFIG_EDITS[name]
    path = _copy(good, tmp_path / "ck")
    cfg = json.loads((path / "config.json").read_text())
    edit(cfg)
    (path / "config.json").write_text(json.dumps(cfg))
    _check_fails(path, [word], capsys)


@pytest.mark.parametrize("name", sorted(RAW_CONFIGS))
def test_tampered_config_text(good, tmp_path, capsys, name):
    raw, word = RAW_CONFIGS[name]
    path = _copy(good, tmp_path / "ck")
    (path / "config.json").write_bytes(raw)
    _check_fails(path, [word], capsys)


def _rewrite_weights(path, fn, fix_sha=True):
    w = path / "model.safetensors"
    w.write_bytes(fn(w.read_bytes()))
    if fix_sha:  # a consistent forgery: the checksum matches, the content is still wrong
        import hashlib

        cfg = json.loads((path / "config.json").read_text())
        cfg["weights_sha256"] = hashlib.sha256(w.read_bytes()).hexdigest()
        (path / "config.json").write_text(json.dumps(cfg))


def _edit_header(fn):
    def edit(raw):
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8 : 8 + n])
        fn(header)
        text = json.dumps(header).encode()
        return struct.pack("<Q", len(text)) + text + raw[8 + n :]

    return edit


def _reshape(header):
    key = next(k for k in header if k.endswith("patch_embed.bias"))
    header[key]["shape"] = [1, *header[key]["shape"]]  # the same bytes, another shape


def _drop_tensor(header):
    key = next(k for k in header if k.endswith("dec_pred.bias"))
    del header[key]


WEIGHT_EDITS = {
    "flipped-byte": (lambda raw: raw[:-10] + bytes([raw[-10] ^ 1]) + raw[-9:], False, "checksum"),
    "truncated": (lambda raw: raw[:-100], False, "checksum"),
    "truncated-consistent": (lambda raw: raw[:-100], True, "corrupt weights"),
    "header-length-huge": (lambda raw: struct.pack("<Q", 1 << 60) + raw[8:], True, "corrupt weights"),
    "header-garbage": (lambda raw: raw[:8] + b"\x00" * 32 + raw[40:], True, "corrupt weights"),
    "empty": (lambda raw: b"", True, "corrupt weights"),
    "shape-edited": (_edit_header(_reshape), True, "patch_embed.bias is [1, 32]"),
    "tensor-dropped": (_edit_header(_drop_tensor), True, "corrupt weights"),
}


@pytest.mark.parametrize("name", sorted(WEIGHT_EDITS))
def test_tampered_weights(good, tmp_path, capsys, name):
    fn, fix_sha, word = WEIGHT_EDITS[name]
    path = _copy(good, tmp_path / "ck")
    _rewrite_weights(path, fn, fix_sha)
    _check_fails(path, [word], capsys)


@pytest.mark.parametrize("which", ["config.json", "model.safetensors"])
@pytest.mark.parametrize("target", ["/dev/zero", "dir", "dangling"])
def test_files_must_be_regular(good, tmp_path, capsys, which, target):
    path = _copy(good, tmp_path / "ck")
    (path / which).unlink()
    if target == "dir":
        (tmp_path / "d").mkdir()
        target = str(tmp_path / "d")
    elif target == "dangling":
        target = str(tmp_path / "nowhere")
    os.symlink(target, path / which)
    _check_fails(path, [which], capsys)


def test_a_hand_made_checkpoint_needs_the_explicit_opt_out(good, tmp_path):
    path = _copy(good, tmp_path / "ck")
    cfg = json.loads((path / "config.json").read_text())
    del cfg["weights_sha256"]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="require_checksum=False"):
        AudioMAE.from_pretrained(path)
    model = AudioMAE.from_pretrained(path, require_checksum=False)
    assert model.cfg.enc_dim == 32


def test_the_reader_accepts_what_the_writer_writes(good, tmp_path):
    info = inspect_checkpoint(good)
    model = load_model(good)
    assert info.n_params == sum(p.numel() for p in model.state_dict().values())
    save_checkpoint(tmp_path / "raw", {"w": torch.zeros(2)}, {"kind": "anything"})
    from audiomae.checkpoint import load_checkpoint

    tensors, cfg = load_checkpoint(tmp_path / "raw")  # tensors + config without building a model
    assert cfg["kind"] == "anything" and tensors["w"].shape == (2,)


def test_at_least_fifty_variants():
    assert len(CONFIG_EDITS) + len(RAW_CONFIGS) + len(WEIGHT_EDITS) + 6 >= 50


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e30])
def test_non_finite_or_huge_weights_are_refused(good, tmp_path, value):
    from safetensors.torch import load_file, save_file

    path = _copy(good, tmp_path / "ck")
    tensors = {k: v.clone() for k, v in load_file(str(path / "model.safetensors")).items()}
    key = next(k for k in tensors if k.endswith("patch_embed.weight"))
    tensors[key].view(-1)[3] = value
    save_file(tensors, str(path / "model.safetensors"))
    _rewrite_weights(path, lambda raw: raw, fix_sha=True)  # a consistent forgery
    with pytest.raises(ValueError, match="non-finite or huge") as info:
        load_model(path)
    assert key in str(info.value) and "\n" not in str(info.value)


def test_a_huge_weights_file_is_refused_before_it_is_read(good, tmp_path, capsys):
    from audiomae.checkpoint import MAX_WEIGHTS_BYTES

    path = _copy(good, tmp_path / "ck")
    with open(path / "model.safetensors", "r+b") as fh:
        fh.truncate(MAX_WEIGHTS_BYTES + 1)  # sparse: no disk used, 2 GB to hash if it were read
    _check_fails(path, ["bytes, more than"], capsys)


# ---- the torch-free runtime's exports: the same checks -----------------------------------------
@pytest.fixture(scope="module")
def export_dir():
    from importlib.resources import files

    return files("audiomae") / "assets" / "plc_tiny_speech_onnx"


EXPORT_EDITS = {
    "model-missing": (_delete("model"), "model"),
    "features-missing": (_delete("features"), "features"),
    "norm-missing": (_delete("norm"), "norm"),
    "n_mels-string": (_set("model.n_mels", "80"), "model.n_mels"),
    "patch_t-zero": (_set("model.patch_t", 0), "patch_t"),
    "dec_window-negative": (_set("model.dec_window", -5), "dec_window"),
    "version-string": (_set("format_version", "1"), "format_version"),
    "sample_rate-8k": (_set("features.sample_rate", 8000), "sample_rate"),
    "f_min-above-nyquist": (_set("features.f_min", 9000.0), "f_min"),
    "norm-std-huge": (_set("norm.std", 1e300), "std"),
    "onnx-file-absolute": (_set("onnx.file", "/etc/passwd"), "onnx.file"),
    "onnx-file-parent": (_set("onnx.file", "../model.onnx"), "onnx.file"),
    "onnx-sha-missing": (_delete("onnx.sha256"), "onnx.sha256"),
    "onnx-sha-wrong": (_set("onnx.sha256", "0" * 64), "checksum"),
}


def _copy_export(src, dst):
    dst.mkdir()
    for name in ("config.json", "model.onnx"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


@pytest.mark.parametrize("name", sorted(EXPORT_EDITS))
def test_tampered_export_config(export_dir, tmp_path, name):
    from audiomae.runtime import OnnxPLCModel

    edit, word = EXPORT_EDITS[name]
    path = _copy_export(export_dir, tmp_path / "export")
    cfg = json.loads((path / "config.json").read_text())
    edit(cfg)
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        OnnxPLCModel(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and word in message, message


def test_a_flipped_byte_in_the_onnx_file_is_caught(export_dir, tmp_path):
    from audiomae.runtime import OnnxPLCModel

    path = _copy_export(export_dir, tmp_path / "export")
    raw = bytearray((path / "model.onnx").read_bytes())
    raw[len(raw) // 2] ^= 1
    (path / "model.onnx").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        OnnxPLCModel(path)


def test_export_never_writes_into_the_checkpoint_it_reads(good, tmp_path, capsys):
    path = _copy(good, tmp_path / "ck")
    before = {n: (path / n).read_bytes() for n in ("config.json", "model.safetensors")}
    assert main(["export", str(path), "-o", str(path)]) == 2
    assert "inputs are never overwritten" in capsys.readouterr().err
    assert {n: (path / n).read_bytes() for n in before} == before
    assert sorted(p.name for p in path.iterdir()) == sorted(before)


@pytest.mark.parametrize("opset", ["99", "7", "0"])
def test_export_refuses_an_opset_it_cannot_write(good, tmp_path, capsys, opset):
    pytest.importorskip("onnx")
    out = tmp_path / "export"
    assert main(["export", str(good), "-o", str(out), "--opset", opset]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "opset must be" in err, err
    assert not out.exists()


# ---- what a concealer is given as its model ----------------------------------------------------
def test_a_model_directory_is_accepted_and_anything_else_named(export_dir):
    from audiomae.plc import make_concealer

    assert make_concealer("mae", model=str(export_dir)).backend == "onnx"
    with pytest.raises(ValueError, match="model must be an AudioMAE"):
        make_concealer("mae", model=5)


def test_a_model_that_cannot_conceal_packets_fails_when_the_concealer_is_built(tmp_path):
    from audiomae.config import FeatureConfig
    from audiomae.plc import make_concealer

    cfg = ModelConfig(
        enc_dim=32, enc_depth=1, enc_heads=2, dec_dim=32, dec_depth=1, dec_heads=2, max_frames=64
    )
    model = AudioMAE(cfg, features=FeatureConfig(sample_rate=8000, f_max=4000.0))
    with pytest.raises(ValueError, match="8000 Hz"):
        make_concealer("mae", model=model)
