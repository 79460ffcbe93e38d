"""``audiomae convert-reference CKPT -o DIR``: a checkpoint of the original Audio-MAE code
(facebookresearch/AudioMAE ``.pth``: pretrained or fine-tuned) as this project's checkpoint.
The file is read without running pickled code (:func:`audiomae.reference.read_reference`)."""

from __future__ import annotations

import argparse

from audiomae.commands import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert-reference",
        help="convert an original Audio-MAE .pth (pretrained or fine-tuned) to a checkpoint directory",
    )
    p.add_argument("checkpoint", help="the reference's .pth file (e.g. pretrained.pth, finetuned.pth)")
    p.add_argument("-o", "--output", required=True, help="directory for model.safetensors and config.json")
    p.add_argument(
        "--heads",
        type=positive_int,
        default=None,
        help="attention heads (default: from the file's args.model, else the reference's ViT-S/B/L/H "
        "by width)",
    )
    p.add_argument(
        "--n-mels", type=positive_int, default=128, help="mel bins of the model's input (default 128)"
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="normalisation statistics by the reference's dataset name: audioset, esc50, speechcommands, "
        "k400 (default: the file's args.dataset, else audioset)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiomae.audio import check_outputs
    from audiomae.reference import convert_file

    check_outputs({"-o": args.output}, inputs=[args.checkpoint], directories=["-o"])
    conv = convert_file(
        args.checkpoint, args.output, num_heads=args.heads, n_mels=args.n_mels, dataset=args.dataset
    )
    for note in conv.notes:
        print(f"note: {note}")
    from audiomae.classify import AudioClassifier

    model = conv.model
    if isinstance(model, AudioClassifier):
        cfg, what = model.encoder.cfg, f"classifier, {model.cfg.num_classes} classes"
    else:
        cfg, what = model.cfg, "encoder (AudioMAE.from_pretrained; `audiomae finetune encoder=DIR`)"
    print(
        f"{args.output}: {what}; ViT {cfg.enc_dim}-d x {cfg.enc_depth} blocks, {cfg.enc_heads} heads, "
        f"{cfg.patch_t}x{cfg.patch_f} patches over {cfg.max_frames} frames x {cfg.n_mels} Kaldi fbank bins"
    )
    return 0
