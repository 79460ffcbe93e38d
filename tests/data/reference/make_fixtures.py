"""Make the reference fixtures in this folder by running the original code (see ../README.md).

    OMP_NUM_THREADS=1 /tmp/refvenv/bin/python tests/data/reference/make_fixtures.py \
        --reference /tmp/refwork/AudioMAE \
        --kaldi /tmp/refvenv/lib/python3.11/site-packages/torchaudio/compliance/kaldi.py

Not a test and not part of the package: it needs the reference checkout, timm 0.3.2 and
torchaudio's kaldi.py, none of which the project depends on.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import types
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent
SR = 16000
AUDIOSET_MEAN, AUDIOSET_STD = -4.2677393, 4.5689974  # main_finetune_as.py norm_stats['audioset']


def _stub(name: str) -> types.ModuleType:
    class Stub(types.ModuleType):
        def __getattr__(self, attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return type(attr, (), {})

    module = sys.modules[name] = Stub(name)
    return module


def shims() -> None:
    """What the 2022 code needs on torch 2.13 / numpy 2 (none of it runs in the fixtures):
    torchvision (imported by timm 0.3.2's data pipeline) and torchaudio (imported by the reference's
    util modules) are stubbed, torch._six.inf and np.float are restored."""
    tv = _stub("torchvision")
    tv.transforms = _stub("torchvision.transforms")
    tv.transforms.functional = _stub("torchvision.transforms.functional")
    tv.datasets = _stub("torchvision.datasets")
    if "torchaudio" not in sys.modules:
        _stub("torchaudio")
    six = types.ModuleType("torch._six")
    six.inf = math.inf
    sys.modules["torch._six"] = six
    np.float = float  # util/pos_embed.py: np.arange(..., dtype=np.float)


def load_kaldi(path: str):
    """torchaudio's compliance/kaldi.py, loaded on its own: its fbank is plain torch (the module
    imports torchaudio only for mfcc's DCT), and torchaudio's compiled extension does not load
    on this torch."""
    if "torchaudio" not in sys.modules:
        _stub("torchaudio")
    spec = importlib.util.spec_from_file_location("torchaudio_kaldi", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clips() -> dict[str, np.ndarray]:
    """Two deterministic test signals: 6 s of a chirp, harmonic bursts, noise, a DC offset and a
    stretch of constant samples (silent frames, which hit Kaldi's log floor), and 8123 samples of
    louder noise and a tone."""
    rng = np.random.default_rng(35)
    t = np.arange(6 * SR) / SR
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + (6000 - 100) / (2 * 6) * t**2))
    bursts = sum(0.1 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 8)) * (
        np.sin(2 * np.pi * 1.5 * t) > 0
    )
    a = chirp + bursts + 0.01 * rng.standard_normal(t.size) + 0.05
    a[40000:48000] = 0.05
    tb = np.arange(8123) / SR
    b = 0.5 * rng.standard_normal(tb.size) * np.hanning(tb.size) + 0.3 * np.sin(2 * np.pi * 1234.5 * tb)
    return {"a": a.astype(np.float32), "b": b.astype(np.float32)}


def reference_fbank(kaldi, wave: np.ndarray):
    """dataset.py AudiosetDataset._wav2fbank, without the pad/cut (waveform as torchaudio.load gives it)."""
    import torch

    w = torch.from_numpy(wave)[None]
    w = w - w.mean()
    return kaldi.fbank(
        w,
        htk_compat=True,
        sample_frequency=SR,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=128,
        dither=0.0,
        frame_shift=10,
    )


def make_fbank_fixture(kaldi) -> None:
    out = {}
    for name, wave in clips().items():
        out[f"wave_{name}"] = wave
        out[f"fbank_{name}"] = reference_fbank(kaldi, wave).numpy()
    np.savez_compressed(OUT / "kaldi_fbank.npz", **out)


def random_state(shapes: list[tuple[str, tuple[int, ...]]], seed: int) -> dict[str, np.ndarray]:
    """Random weights for the named parameters, the same on every machine (each tensor from its own
    PCG64 stream, uniform, cast to float32): LayerNorm weights 1 +- 0.2, biases +- 0.1, tokens
    +- 0.5, matrices with unit-variance fan-in scaling. ``tests/test_reference.py`` makes the
    ViT-B weights with this function instead of storing them."""
    out = {}
    for i, (name, shape) in enumerate(shapes):
        u = np.random.default_rng([seed, i]).random(size=shape) * 2 - 1
        leaf = name.rsplit(".", 1)[-1]
        if "norm" in name and leaf == "weight":
            value = 1 + 0.2 * u
        elif leaf == "bias":
            value = 0.1 * u
        elif name.endswith("_token"):
            value = 0.5 * u
        else:
            value = u * math.sqrt(3 / max(1, int(np.prod(shape[1:]))))
        out[name] = value.astype(np.float32)
    return out


def parameter_shapes(model) -> list[tuple[str, tuple[int, ...]]]:
    """Every learned parameter in the reference's order (not the fixed positional tables)."""
    return [(n, tuple(p.shape)) for n, p in model.named_parameters() if "pos_embed" not in n]


def fill(model, seed: int) -> list[tuple[str, tuple[int, ...]]]:
    import torch

    shapes = parameter_shapes(model)
    state = {k: torch.from_numpy(v) for k, v in random_state(shapes, seed).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("pos_embed" in k or "relative_position_index" in k for k in missing), (
        missing
    )
    return shapes


def pretrained_pos_embed(dim: int, img_size: tuple[int, int]):
    """The positional table a reference pretraining run stores: models_mae.initialize_weights with
    audio_exp=True computes it over PatchEmbed_org's patch_hw (which lists the grid as (W, H))."""
    import torch
    from util.patch_embed import PatchEmbed_org
    from util.pos_embed import get_2d_sincos_pos_embed_flexible

    hw = PatchEmbed_org(img_size, 16, 1, dim).patch_hw
    return torch.from_numpy(get_2d_sincos_pos_embed_flexible(dim, hw, cls_token=True)).float().unsqueeze(0)


def finetune_model(dim: int, depth: int, heads: int, target_length: int, num_classes: int = 527):
    """The model main_finetune_as.py builds (global pooling, stride-16 PatchEmbed_new, a fixed
    positional table loaded from the pretrained file), in eval mode."""
    from functools import partial

    import models_vit
    import torch
    from torch import nn
    from util.patch_embed import PatchEmbed_new

    model = models_vit.VisionTransformer(
        patch_size=16,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=4,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_classes=num_classes,
        drop_path_rate=0.1,
        global_pool=True,
        mask_2d=True,
        use_custom_patch=False,
    )
    img_size = (target_length, 128)
    model.patch_embed = PatchEmbed_new(
        img_size=img_size, patch_size=(16, 16), in_chans=1, embed_dim=dim, stride=16
    )
    num_patches = model.patch_embed.num_patches
    model.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim), requires_grad=False)
    model.pos_embed.data.copy_(pretrained_pos_embed(dim, img_size))
    return model.eval()


def reference_input(kaldi, wave: np.ndarray, target_length: int):
    """dataset.py: fbank, pad with zeros or cut to target_length, (x - mean) / (2 * std); (T, F)."""
    import torch

    fbank = reference_fbank(kaldi, wave)
    p = target_length - fbank.shape[0]
    if p > 0:
        fbank = torch.nn.ZeroPad2d((0, 0, 0, p))(fbank)
    elif p < 0:
        fbank = fbank[0:target_length, :]
    return (fbank - AUDIOSET_MEAN) / (AUDIOSET_STD * 2)


def run_finetune(model, x):
    """engine_finetune_as.evaluate: model(images) and a sigmoid for AudioSet's mAP."""
    import torch

    with torch.no_grad():
        features = model.forward_features(x[None, None])
        logits = model(x[None, None])
    return features[0].numpy(), logits[0].numpy(), torch.sigmoid(logits)[0].numpy()


def make_model_fixtures(kaldi) -> None:
    import argparse
    from functools import partial

    import models_mae
    import torch
    from torch import nn

    wave = clips()["a"]  # every model fixture's input: kaldi_fbank.npz's wave_a
    # Tiny fine-tuned classifier: its .pth as misc.save_model writes it (model, epoch, args).
    model = finetune_model(dim=64, depth=2, heads=2, target_length=256)
    fill(model, seed=1)
    args = argparse.Namespace(
        model="vit_tiny_fixture", dataset="audioset", nb_classes=527, global_pool=True, use_custom_patch=False
    )
    torch.save({"model": model.state_dict(), "epoch": 59, "args": args}, OUT / "tiny_finetuned.pth")
    x = reference_input(kaldi, wave, 256)
    features, logits, probs = run_finetune(model, x)
    np.savez_compressed(OUT / "tiny_finetuned.npz", features=features, logits=logits, probs=probs)

    # Tiny pretrained MAE with the Swin-local decoder (decoder_mode=1), as main_pretrain.py builds it.
    mae = models_mae.MaskedAutoencoderViT(
        img_size=(1024, 128),
        patch_size=16,
        in_chans=1,
        embed_dim=64,
        depth=2,
        num_heads=2,
        decoder_embed_dim=16,
        decoder_depth=2,
        decoder_num_heads=16,
        mlp_ratio=4,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        audio_exp=True,
        decoder_mode=1,
    ).eval()
    fill(mae, seed=2)
    torch.save({"model": mae.state_dict(), "epoch": 32, "args": args}, OUT / "tiny_pretrained.pth")
    x = reference_input(kaldi, wave, 1024)
    with torch.no_grad():
        latent, _, ids_restore, _ = mae.forward_encoder(x[None, None], mask_ratio=0.0)
        index = ids_restore.unsqueeze(-1).expand(-1, -1, latent.shape[-1])
        tokens = torch.gather(latent[:, 1:], 1, index)  # back to patch order
    np.savez_compressed(OUT / "tiny_pretrained.npz", tokens=tokens[0].numpy())

    # ViT-B/16 fine-tuned on AudioSet at 1024 x 128: weights from random_state(shapes, seed=3),
    # not stored; the shapes (the reference's layout) and the outputs are.
    model = finetune_model(dim=768, depth=12, heads=12, target_length=1024)
    shapes = fill(model, seed=3)
    x = reference_input(kaldi, wave, 1024)
    features, logits, probs = run_finetune(model, x)
    names = np.array([n for n, _ in shapes])
    dims = np.array([",".join(map(str, s)) for _, s in shapes])
    np.savez_compressed(
        OUT / "base_finetuned.npz",
        names=names,
        shapes=dims,
        seed=np.int64(3),
        features=features,
        logits=logits,
        probs=probs,
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reference", required=True, help="checkout of facebookresearch/AudioMAE")
    p.add_argument("--kaldi", required=True, help="torchaudio/compliance/kaldi.py")
    args = p.parse_args()
    kaldi = load_kaldi(args.kaldi)
    make_fbank_fixture(kaldi)
    shims()
    sys.path.insert(0, args.reference)
    make_model_fixtures(kaldi)


if __name__ == "__main__":
    main()
