"""Receive a real Opus stream and conceal its lost packets with the MAE instead of libopus' PLC.

    python examples/opus_stream.py

The sender side encodes the bundled clip into 20 ms Opus payloads (64 kb/s, as a VoIP client
would send them); 10% of them are dropped; the receiver (``OpusReceiver``) decodes the rest
and conceals the gaps with the MAE, keeping its decoder in step with what it played. The same
losses concealed by libopus itself are scored alongside (needs the ``eval`` extra: pesq, speechmos).
"""

import numpy as np
import torch

from audiomae.audio import SAMPLES_PER_PACKET, load_audio
from audiomae.eval.metrics import pesq_wb, plcmos
from audiomae.loss_models import apply_loss
from audiomae.plc import OpusConcealer, OpusReceiver, conceal, make_concealer
from audiomae.plc.demo import demo_clip_path

torch.set_num_threads(1)
clean = load_audio(demo_clip_path())
clean = clean[: clean.size // SAMPLES_PER_PACKET * SAMPLES_PER_PACKET]
payloads = OpusConcealer(bitrate=64000).encode_stream(clean)  # the sender
lost = np.random.default_rng(0).random(len(payloads)) < 0.1

receiver = OpusReceiver(make_concealer("mae"), bitrate=64000)  # the receiver
played = [receiver.push(None if gone else payload) for payload, gone in zip(payloads, lost)]
played.append(receiver.flush())
results = {
    "MAE": np.concatenate(played)[: clean.size],
    # the same stream and losses, concealed by libopus' own PLC (a codec simulation)
    "opus PLC": conceal(apply_loss(clean, lost), lost, "opus", clean=clean),
}

print(f"{len(payloads)} Opus packets, {int(lost.sum())} lost")
for name, y in results.items():
    print(f"{name:9s} PESQ-WB {pesq_wb(clean, y):.2f}  PLCMOS {plcmos(y):.2f}")
