"""Push 20 ms packets through the streaming concealer, as a VoIP receiver would.

    python examples/stream_packets.py

Each call to ``push`` takes one packet (320 float32 samples at 16 kHz, or None when the
packet was lost) and returns 320 samples to play; with ``lookahead=1`` the output is one
packet (20 ms) behind the input. ``flush`` returns what is still delayed at the end.
"""

import time

import numpy as np
import torch

from audiomae.audio import SAMPLES_PER_PACKET, load_audio
from audiomae.plc import make_concealer
from audiomae.plc.demo import demo_clip_path

torch.set_num_threads(1)
audio = load_audio(demo_clip_path())
packets = [
    audio[i : i + SAMPLES_PER_PACKET]
    for i in range(0, audio.size - SAMPLES_PER_PACKET + 1, SAMPLES_PER_PACKET)
]
rng = np.random.default_rng(0)
arrived = rng.random(len(packets)) > 0.1  # 10% independent loss

concealer = make_concealer("mae", lookahead=1)
played, ms = [], []
for packet, ok in zip(packets, arrived):
    start = time.perf_counter()
    played.append(concealer.push(packet if ok else None))
    ms.append(1000 * (time.perf_counter() - start))
played.append(concealer.flush())
output = np.concatenate(played)[concealer.lookahead * SAMPLES_PER_PACKET :]

print(f"{len(packets)} packets, {int((~arrived).sum())} lost, output {output.size} samples")
print(f"compute per push: mean {np.mean(ms):.2f} ms, max {np.max(ms):.2f} ms (real-time budget: 20 ms)")
