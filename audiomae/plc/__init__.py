"""Packet-loss concealment: the streaming interface, the built-in concealers and offline ``conceal()``.

Importing the package registers every built-in method (:func:`available_methods`).
"""

from audiomae.plc import opus_deep  # noqa: F401 - registers opus-deep
from audiomae.plc.base import (
    StreamingConcealer,
    available_methods,
    listed_methods,
    make_concealer,
    method_info,
    register_concealer,
)
from audiomae.plc.baselines import G711Concealer, ZeroConcealer
from audiomae.plc.mae import ConcealerConfig, MAEConcealer
from audiomae.plc.offline import conceal
from audiomae.plc.opus import OpusConcealer, OpusDecodedConcealer, OpusReceiver

__all__ = [
    "ConcealerConfig",
    "G711Concealer",
    "MAEConcealer",
    "OpusConcealer",
    "OpusDecodedConcealer",
    "OpusReceiver",
    "StreamingConcealer",
    "ZeroConcealer",
    "available_methods",
    "conceal",
    "listed_methods",
    "make_concealer",
    "method_info",
    "register_concealer",
]
