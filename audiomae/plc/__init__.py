"""Packet-loss concealment: the streaming interface, baselines and offline ``conceal()``."""

from audiomae.plc.base import StreamingConcealer, available_methods, make_concealer, register_concealer
from audiomae.plc.baselines import (
    G711Concealer,
    OpusConcealer,
    OpusDecodedConcealer,
    OpusReceiver,
    ZeroConcealer,
)
from audiomae.plc.offline import conceal

__all__ = [
    "G711Concealer",
    "OpusConcealer",
    "OpusDecodedConcealer",
    "OpusReceiver",
    "StreamingConcealer",
    "ZeroConcealer",
    "available_methods",
    "conceal",
    "make_concealer",
    "register_concealer",
]
