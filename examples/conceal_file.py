"""Conceal packet loss in a file with the bundled Audio-MAE concealer.

    python examples/conceal_file.py [speech.wav] [--out concealed.wav]

Without an input file it uses the bundled demo clip. It drops 10% of the 20 ms packets in
bursts (Gilbert-Elliott, mean burst 2 packets), conceals them causally and with one packet
of lookahead, and without the MAE's prediction (``lpc``, the same concealer with the MAE
switched off), and prints PESQ-WB for the lossy and concealed signals.
"""

import argparse

import torch

from audiomae.audio import load_audio, save_audio
from audiomae.eval.metrics import pesq_wb
from audiomae.loss_models import apply_loss, draw_loss, n_packets
from audiomae.plc import conceal
from audiomae.plc.demo import demo_clip_path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("input", nargs="?", default=str(demo_clip_path()))
parser.add_argument("--out", default="concealed.wav")
args = parser.parse_args()
torch.set_num_threads(1)

clean = load_audio(args.input)  # float32 mono at 16 kHz, whatever the file's format
lost = draw_loss("ge10b2", n_packets(clean.size), seed=0)  # one bool per 20 ms packet
lossy = apply_loss(clean, lost)  # what the receiver has: lost packets are zeros

causal = conceal(lossy, lost, method="mae")
interp = conceal(lossy, lost, method="mae", lookahead=1)
no_mae = conceal(lossy, lost, method="lpc")
save_audio(args.out, causal)

print(f"{lost.sum()} of {lost.size} packets lost")
print(f"PESQ-WB lossy            {pesq_wb(clean, lossy):.2f}")
print(f"PESQ-WB mae (causal)     {pesq_wb(clean, causal):.2f}")
print(f"PESQ-WB mae (lookahead)  {pesq_wb(clean, interp):.2f}")
print(f"PESQ-WB lpc (no MAE)     {pesq_wb(clean, no_mae):.2f}")
print(f"wrote {args.out}")
