"""Footprint and speed of the torch-free runtime (``backend="onnx"``) beside the torch backend.

    python benchmarks/bench_runtime.py [--repeats 200]

* Installed size: the files of the core install (audiomae and the packages it requires,
  followed recursively) as this environment's package metadata lists them, and torch's.
* Import time: a fresh process imports the concealer and builds ``make_concealer("mae")``,
  with torch blocked (the runtime) and with torch (the torch backend); best of 5.
* One MAE pass over the streaming concealer's window (24 packets, the target and the unknown
  packet after it lost) on one thread, per backend: torch int8 (the torch default), torch fp32,
  ONNX fp32 (the runtime), and the ONNX graph quantised by onnxruntime (int8 dynamic).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "nnAudio", "librosa", "safetensors"):
            raise ModuleNotFoundError(name, name=name)
sys.meta_path.insert(0, Block())
"""
BUILD = """
import time
t = time.perf_counter()
from audiomae.plc import make_concealer
make_concealer("mae", backend={backend!r})
print(time.perf_counter() - t)
"""


def _closure(name: str, seen: set[str]) -> None:
    from packaging.requirements import Requirement

    key = name.lower().replace("_", "-")
    if key in seen:
        return
    seen.add(key)
    for req in metadata.requires(name) or []:
        r = Requirement(req)
        if r.marker is None or r.marker.evaluate({"extra": ""}):
            _closure(r.name, seen)


def installed_mb(names: set[str]) -> float:
    total = 0
    for name in names:
        if name == "audiomae":  # perhaps an editable install: measure the package itself
            import audiomae

            root = Path(audiomae.__file__).parent
            total += sum(
                f.stat().st_size for f in root.rglob("*") if f.is_file() and "__pycache__" not in f.parts
            )
            continue
        dist = metadata.distribution(name)
        total += sum(f.size or 0 for f in dist.files or [])
    return total / 1e6


def import_seconds(backend: str, block: bool) -> float:
    code = (BLOCK_TORCH if block else "") + BUILD.format(backend=backend)
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True,
                text=True,
                check=True,
                env={"OMP_NUM_THREADS": "1", "PATH": ""},
            ).stdout
        )
        for _ in range(5)
    ]
    return min(runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    import onnxruntime
    import torch

    torch.set_num_threads(1)
    core: set[str] = set()
    _closure("audiomae", core)
    torch_deps: set[str] = set()
    _closure("torch", torch_deps)
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, 1 thread\n")
    print("| what | value |")
    print("|---|---|")
    print(f"| core install ({', '.join(sorted(core))}) | {installed_mb(core):.0f} MB |")
    print(f"| torch alone | {installed_mb({'torch'}):.0f} MB |")
    print(f"| import + build `mae`, onnx, torch blocked | {import_seconds('onnx', True):.2f} s |")
    print(f"| import + build `mae`, torch backend | {import_seconds('torch', False):.2f} s |")

    from audiomae.audio import SAMPLES_PER_PACKET, load_audio
    from audiomae.plc.demo import demo_clip_path
    from audiomae.plc.mae import ConcealerConfig, MAEConcealer
    from audiomae.runtime import OnnxPLCModel

    audio = load_audio(demo_clip_path())
    cols = ConcealerConfig().context_packets
    wave = audio[16000 : 16000 + cols * SAMPLES_PER_PACKET]
    lost = np.zeros(cols, dtype=bool)
    lost[-2:] = True
    columns = (cols - 5, cols)  # what the causal concealer asks for
    backends = {
        "torch int8": MAEConcealer(config=ConcealerConfig(int8=True), backend="torch"),
        "torch fp32": MAEConcealer(config=ConcealerConfig(int8=False), backend="torch"),
        "onnx fp32": MAEConcealer(backend="onnx"),
    }
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from audiomae.runtime.model import DEFAULT_ONNX_MODEL, _asset

        tmp = Path(tempfile.mkdtemp())
        src = _asset(DEFAULT_ONNX_MODEL)
        (tmp / "config.json").write_text((src / "config.json").read_text())
        quantize_dynamic(str(src / "model.onnx"), str(tmp / "model.onnx"), weight_type=QuantType.QInt8)
        backends["onnx int8 (onnxruntime dynamic)"] = MAEConcealer(OnnxPLCModel(tmp))
    except ImportError as exc:
        print(f"(onnx int8 skipped: {exc})")
    ref = backends["torch fp32"].predict_logmel(wave, lost, columns).numpy()
    # Interleaved, so that load from other processes falls on every backend alike.
    names = list(backends)
    ms = {name: np.zeros(args.repeats) for name in names}
    for i in range(args.repeats + 5):
        for name in names:
            start = time.perf_counter()
            backends[name].predict_logmel(wave, lost, columns)
            if i >= 5:
                ms[name][i - 5] = 1000 * (time.perf_counter() - start)
    for name in names:
        out = np.asarray(backends[name].predict_logmel(wave, lost, columns))
        err = float(np.abs(out - ref)[..., -4:].max())  # the two predicted columns
        print(
            f"| MAE pass, {name} | {np.median(ms[name]):.2f} ms median, "
            f"{np.percentile(ms[name], 99):.2f} ms p99 (prediction within {err:.1e} of torch fp32) |"
        )


if __name__ == "__main__":
    main()
