"""Reference outputs of every concealer on the bundled demo clip, and the generator that writes them.

Each case conceals the demo clip (``audiomae demo``'s clip, loss drawn as the demo draws it) under
one loss condition with one concealer and keeps the output as 16-bit PCM (scale 32767, so full
scale is exact). What is stored in ``tests/data`` is the difference from a base signal, which is
zero almost everywhere and compresses well: the lossy input for most methods, the ``opus``
output for a concealer run on Opus-decoded audio (``opus+...``).
``test_plc_reference.py`` checks that the concealers still produce these outputs; rewrite them
(only when a change of output is intended) with::

    OMP_NUM_THREADS=1 python tests/plc_reference.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data" / "plc_reference.npz"
CONDITIONS = ("ge10b2", "ge20b3")
SEED = 0  # the demo's default seed
SCALE = 32767
# Tolerance: 16-bit PCM resolution (half a step) plus float rounding.
ATOL = 0.5 / 32768 + 1e-7 + (0.5 / SCALE - 0.5 / 32768)
SKIP = ("opus-deep",)  # needs a libopus with deep PLC, given by path (absent on most machines)

# Concealers built by options rather than by name alone: the torch-free runtime, the fp32 MAE,
# and a residual model (the bundled MAE with a fixed, non-zero correction head).
EXTRA = ("mae@onnx", "mae-la1@onnx", "mae@fp32", "residual", "residual-la1")


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
    if case == "mae@fp32":
        from audiomae.plc.mae import ConcealerConfig

        return make_concealer("mae", config=ConcealerConfig(int8=False))
    if case in ("residual", "residual-la1"):
        return make_concealer("mae", model=_residual_model(), lookahead=int(case.endswith("la1")))
    return make_concealer(case)


def clip():
    from audiomae.audio import load_audio
    from audiomae.plc.demo import demo_clip_path

    return load_audio(demo_clip_path())


def conceal_case(case: str, condition: str, clean: np.ndarray) -> np.ndarray:
    from audiomae.loss_models import apply_loss, draw_loss, n_packets
    from audiomae.plc import conceal

    lost = draw_loss(condition, n_packets(clean.size), SEED)
    return conceal(apply_loss(clean, lost), lost, build(case), clean=clean)


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
