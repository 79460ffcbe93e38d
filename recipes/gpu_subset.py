"""Write the training audio a GPU device call can carry: ``python recipes/gpu_subset.py OUT_DIR``.

A device call carries the repository plus at most 64 MiB, and LibriSpeech train (57 MB of FLAC)
plus the repository (18 MB) is more than that. This keeps every speaker: the first
``--fraction`` (default 0.8) of each train file, re-encoded as FLAC at the highest compression
(OUT_DIR/train, ~44 MB), and the first dev file of each dev speaker for validation
(OUT_DIR/dev). The rest of each train file is never seen in training, so it can score models
trained on the subset (``--tails DIR`` writes those tails).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import soundfile as sf

from audiomae.audio import find_audio

SHARED = Path(__file__).resolve().parents[2] / "shared/data/librispeech"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--train", type=Path, default=SHARED / "train")
    ap.add_argument("--dev", type=Path, default=SHARED / "dev")
    ap.add_argument("--fraction", type=float, default=0.8)
    ap.add_argument("--tails", type=Path, help="also write the unused end of every 5th train file here")
    args = ap.parse_args()
    if not 0 < args.fraction <= 1:
        raise SystemExit(f"--fraction must be in (0, 1], got {args.fraction}")
    (args.out / "train").mkdir(parents=True, exist_ok=True)
    (args.out / "dev").mkdir(parents=True, exist_ok=True)
    files = find_audio(args.train)
    for i, path in enumerate(files):
        audio, sr = sf.read(str(path), dtype="int16")
        keep = int(len(audio) * args.fraction)
        sf.write(str(args.out / "train" / path.name), audio[:keep], sr, format="FLAC", compression_level=1.0)
        if args.tails and i % 5 == 0:
            args.tails.mkdir(parents=True, exist_ok=True)
            sf.write(str(args.tails / path.name), audio[keep:], sr, format="FLAC")
    speakers = set()
    for path in find_audio(args.dev):
        speaker = path.name.split("-")[0]
        if speaker not in speakers:
            speakers.add(speaker)
            audio, sr = sf.read(str(path), dtype="int16")
            sf.write(str(args.out / "dev" / path.name), audio, sr, format="FLAC", compression_level=1.0)
    size = sum(p.stat().st_size for p in args.out.rglob("*.flac")) / 1e6
    print(f"{len(files)} train files ({args.fraction:.0%} of each), {len(speakers)} dev files: {size:.1f} MB")


if __name__ == "__main__":
    main()
