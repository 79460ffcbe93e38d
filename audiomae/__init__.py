"""audiomae: masked autoencoders that listen, for packet-loss concealment and classification.

The main entry points are importable from the top level (loaded on first use, so ``import
audiomae`` stays light): ``audiomae.conceal``, ``audiomae.make_concealer``, ``audiomae.AudioMAE``,
``audiomae.AudioClassifier``, ``audiomae.load_audio`` / ``audiomae.save_audio``,
``audiomae.OpusReceiver`` (MAE concealment on a live Opus stream).
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "conceal": "audiomae.plc",
    "make_concealer": "audiomae.plc",
    "available_methods": "audiomae.plc",
    "OpusReceiver": "audiomae.plc",
    "AudioMAE": "audiomae.model",
    "AudioClassifier": "audiomae.classify",
    "load_audio": "audiomae.audio",
    "save_audio": "audiomae.audio",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'audiomae' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
