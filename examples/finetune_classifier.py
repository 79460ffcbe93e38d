"""Fine-tune an Audio-MAE encoder as a classifier, test it on an unseen speaker, then classify a file.

    python examples/finetune_classifier.py [--encoder audiomae/assets/mae_tiny_speech] [--steps 60]

Writes a small synthetic FSDD-like set (three vowels spoken by three synthetic speakers,
files named ``{label}_{speaker}_{take}.wav``), trains on two speakers and tests on the third.
``--encoder`` starts from a pretrained Audio-MAE checkpoint (default: the bundled speech
encoder); ``--encoder none`` trains from scratch. For the FSDD experiment see
benchmarks/fsdd_experiment.py.
"""

import argparse
import tempfile
from pathlib import Path

import torch

from audiomae.audio import load_audio
from audiomae.classify import AudioClassifier
from audiomae.commands.classify import main as finetune

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--encoder", default="audiomae/assets/mae_tiny_speech")
parser.add_argument("--steps", type=int, default=60)
parser.add_argument("--out", default=None, help="run folder (default: a temporary folder)")
args = parser.parse_args()
encoder = None if args.encoder.lower() == "none" or not Path(args.encoder).exists() else args.encoder

out_dir = Path(args.out or tempfile.mkdtemp(prefix="audiomae_classify_"))
config = {
    "data": {"layout": "synthetic", "split_column": "speaker", "test_values": ["s2"], "clip_seconds": 0.5},
    "encoder": encoder,
    "model": {"preset": "tiny"},
    "mode": "finetune",
    "threads": 2,
    "out_dir": str(out_dir),
    "train": {"steps": args.steps, "batch_size": 16, "lr": 1e-3, "warmup_steps": 5, "progress": False},
}
out = finetune(config)
print(f"encoder: {encoder or 'from scratch'}; accuracy on the unseen speaker: {out['acc']:.1%}")

classifier = AudioClassifier.from_pretrained(out_dir / "model")
example = sorted((out_dir / "synthetic_data").glob("*_s2_*.wav"))[0]
wave = torch.from_numpy(load_audio(example)).unsqueeze(0)
top = classifier.predict(wave, top_k=2)[0]
print(f"{example.name}: " + ", ".join(f"{label} {score:.2f}" for label, score in top))

# Unlabelled adaptation: the new speaker's clips set the head's normalisation statistics.
clips = sorted((out_dir / "synthetic_data").glob("*_s2_*.wav"))
waves = [torch.from_numpy(load_audio(f)).unsqueeze(0) for f in clips]
labels = [f.name.split("_")[0] for f in clips]
before = sum(classifier.predict(w, top_k=1)[0][0][0] == y for w, y in zip(waves, labels)) / len(clips)
pooled = torch.cat([classifier.pooled(w) for w in waves])
classifier.adapt(pooled)
after = sum(classifier.predict(w, top_k=1)[0][0][0] == y for w, y in zip(waves, labels)) / len(clips)
# ... and each clip labelled by the cluster it falls in among the speaker's clips.
clustered = [classifier.cfg.labels[int(i)] for i in classifier.refine(pooled)]
refined = sum(c == y for c, y in zip(clustered, labels)) / len(clips)
print(
    f"unseen speaker, {len(clips)} clips: {before:.1%} before adaptation, {after:.1%} after, "
    f"{refined:.1%} with labels refined by clustering"
)
