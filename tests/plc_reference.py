"""Reference outputs of every concealer on the bundled demo clip, and the generator that writes them.

Each case conceals the demo clip (``audiomae demo``'s clip, loss drawn as the demo draws it) under
one loss condition with one concealer, its MAE in fp32 (:func:`fp32_models`), and keeps the
output as 16-bit PCM (scale 32767, so full scale is exact). fp32 kernels differ between CPUs
in their last bits, int8 ones (the MAE's default) by far more, so the references are fp32 and
the int8 paths are held to them by a bound, not compared exactly. What is stored in
``tests/data`` is the difference from a base signal, which is zero almost everywhere and
compresses well: the lossy input for most methods, the ``opus`` output for a concealer run on
Opus-decoded audio (``opus+...``).
``test_plc_reference.py`` checks that the concealers still produce these outputs; rewrite them
(only when a change of output is intended) with::

    OMP_NUM_THREADS=1 python tests/plc_reference.py
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data" / "plc_reference.npz"
CONDITIONS = ("ge10b2", "ge20b3")
SEED = 0  # the demo's default seed
SCALE = 32767
# fp32 paths: another CPU's kernels move the MAE's output in its last bits (seen: 1.5e-5 after
# the renderer), so a few 16-bit steps; a changed constant moves samples by 1e-2 and more.
ATOL = 4 / SCALE
# ... except where an MAE's output is re-encoded by Opus (``opus+mae*``): the encoder's decisions
# turn those last bits into differences of ~1e-3 (41-46 dB below the signal with AVX2 kernels
# instead of AVX-512), so there the error's level is bounded (a 2.5 -> 3.75 ms fade: 17-21 dB).
REENCODED_MIN_SNR_DB = 30.0
# int8 paths against the fp32 reference, over the lost packets and the packet after each burst:
# the error's level below the fp32 output's, in dB (int8 on one CPU vs fp32: INT8_MEASURED).
INT8_MIN_SNR_DB = 15.0  # measured on AVX-512: 27-58 dB
SKIP = ("opus-deep",)  # needs a libopus with deep PLC, given by path (absent on most machines)

# Concealers built by options rather than by name alone: the torch-free runtime and a residual
# model (the bundled MAE with a fixed, non-zero correction head).
EXTRA = ("mae@onnx", "mae-la1@onnx", "residual", "residual-la1")


def quantised(case: str) -> bool:
    """Whether the case runs an int8 MAE by default (the torch backend of an MAE concealer
    whose prediction is used; ``lpc`` loads no MAE it would call)."""
    name = case.split("@")[0]
    return not case.endswith("@onnx") and (name.startswith("residual") or "mae" in name)


def reencoded(case: str) -> bool:
    """Whether an MAE's output is re-encoded by Opus in the case (chaotic in the last bits)."""
    return case.startswith("opus+") and "mae" in case


@contextlib.contextmanager
def fp32_models():
    """Within it, concealers built with the default ``int8=True`` run their MAE in fp32."""
    from audiomae.plc import models

    original = models.int8_copy
    models._cached_default_model.cache_clear()
    models.int8_copy = lambda model: model
    try:
        yield
    finally:
        models.int8_copy = original
        models._cached_default_model.cache_clear()


def methods() -> list[str]:
    from audiomae.plc import available_methods

    return [m for m in available_methods() if m not in SKIP]


def _residual_model():
    import torch

    from audiomae.model import ResidualPLCMAE
    from audiomae.plc.mae import load_default_plc_model

    model = ResidualPLCMAE.from_mae(load_default_plc_model())
    with torch.no_grad():
        bias = model.dec_pred.bias
        bias.copy_(0.3 * torch.sin(torch.arange(bias.numel(), dtype=torch.float32) * 0.7))
    return model.eval()


def build(case: str):
    """The concealer of one case: a registered method name or one of :data:`EXTRA`."""
    from audiomae.plc import make_concealer

    if case == "mae@onnx":
        return make_concealer("mae", backend="onnx")
    if case == "mae-la1@onnx":
        return make_concealer("mae-la1", backend="onnx")
    if case in ("residual", "residual-la1"):
        return make_concealer("mae", model=_residual_model(), lookahead=int(case.endswith("la1")))
    return make_concealer(case)


def clip():
    from audiomae.audio import load_audio
    from audiomae.plc.demo import demo_clip_path

    return load_audio(demo_clip_path())


def conceal_case(case: str, condition: str, clean: np.ndarray, fp32: bool = True) -> np.ndarray:
    """The case's output; with ``fp32`` its MAE runs in fp32 (the reference path)."""
    from audiomae.loss_models import apply_loss, draw_loss, n_packets
    from audiomae.plc import conceal

    lost = draw_loss(condition, n_packets(clean.size), SEED)
    with fp32_models() if fp32 else contextlib.nullcontext():
        concealer = build(case)
    return conceal(apply_loss(clean, lost), lost, concealer, clean=clean)


def affected(condition: str, n_samples: int) -> np.ndarray:
    """Sample mask of the lost packets and the packet after each burst (where the MAE acts)."""
    from audiomae.audio import SAMPLES_PER_PACKET
    from audiomae.loss_models import draw_loss, n_packets

    lost = np.asarray(draw_loss(condition, n_packets(n_samples), SEED), dtype=bool)
    hit = lost | np.concatenate([[False], lost[:-1]])
    return np.repeat(hit, SAMPLES_PER_PACKET)[:n_samples]


def snr_db(reference: np.ndarray, other: np.ndarray, where: np.ndarray) -> float:
    ref = reference[where].astype(np.float64)
    err = other[where].astype(np.float64) - ref
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum(err**2), 1e-30)))


def key(case: str, condition: str) -> str:
    return f"{case}|{condition}"


def pcm(y: np.ndarray) -> np.ndarray:
    return np.round(np.clip(y, -1.0, 1.0).astype(np.float64) * SCALE).astype(np.int32)


def lossy_input(condition: str, clean: np.ndarray) -> np.ndarray:
    from audiomae.loss_models import apply_loss, draw_loss, n_packets

    return apply_loss(clean, draw_loss(condition, n_packets(clean.size), SEED))


def _base(case: str, condition: str, clean: np.ndarray, stored: dict[str, np.ndarray]) -> np.ndarray:
    if case.startswith("opus+"):
        return reference("opus", condition, clean, stored)
    return pcm(lossy_input(condition, clean))


def reference(case: str, condition: str, clean: np.ndarray, stored: dict[str, np.ndarray]) -> np.ndarray:
    """The stored output of one case as 16-bit PCM values (``int32``; divide by :data:`SCALE`)."""
    return _base(case, condition, clean, stored) + stored[key(case, condition)]


def load() -> dict[str, np.ndarray]:
    with np.load(DATA) as data:
        return {k: data[k] for k in data.files}


def generate() -> Path:
    clean = clip()
    outputs = {
        key(case, cond): pcm(conceal_case(case, cond, clean))
        for case in [*methods(), *EXTRA]
        for cond in CONDITIONS
    }
    stored: dict[str, np.ndarray] = {}
    # ``opus`` first: it is the base of the ``opus+...`` cases.
    for k in sorted(outputs, key=lambda k: not k.startswith("opus|")):
        case, cond = k.split("|")
        stored[k] = (outputs[k] - _base(case, cond, clean, stored)).astype(np.int32)
    DATA.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(DATA, **stored)
    return DATA


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    path = generate()
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
