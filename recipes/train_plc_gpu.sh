#!/usr/bin/env bash
# Train PLC models of several sizes side by side on one GPU, each for a fixed wall-clock budget:
# pretraining (configs/pretrain/speech_gpu.yaml) and then PLC fine-tuning (configs/plc/speech_gpu.yaml).
#
#   recipes/train_plc_gpu.sh TRAIN_DIR VAL_DIR OUT_DIR PRETRAIN_S PLC_S
#
# Variants (name: encoder, decoder):
#   tiny-ft    the bundled pretrained tiny encoder, PLC fine-tuning only, PRETRAIN_S + PLC_S long
#   tiny       128 x 4, 128 x 2 (the bundled size)       ~1.2 M params
#   e256x4     256 x 4, 128 x 2                          ~3.6 M
#   e256x6     256 x 6, 192 x 2                          ~5.7 M
# Each writes OUT_DIR/NAME/{mae,plc,log.txt} (plc = the concealer's model: AudioMAE.from_pretrained)
# and OUT_DIR/NAME/envelope_la{0,1}.txt (benchmarks/plc_prediction_error.py on VAL_DIR).
set -u  # PYTHON=python3 picks the interpreter (default: python)
if [ $# -ne 5 ]; then
    echo "usage: $0 TRAIN_DIR VAL_DIR OUT_DIR PRETRAIN_S PLC_S" >&2
    exit 2
fi
train=$1 val=$2 out=$3 pre_s=$4 plc_s=$5
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"

pipeline() {  # NAME MODEL_OVERRIDES...
    local name=$1; shift
    local dir=$out/$name
    mkdir -p "$dir"
    local data=(data.train="$train" data.val="$val")
    if [ "$name" = tiny-ft ]; then
        "${PYTHON:-python}" "$here/finetune_plc.py" --config "$here/configs/plc/speech_gpu.yaml" "${data[@]}" \
            init="$here/../audiomae/assets/mae_tiny_speech" out_dir="$dir/plc_run" export="$dir/plc" \
            train.time_limit_s=$((pre_s + plc_s)) >"$dir/log.txt" 2>&1
        return
    fi
    "${PYTHON:-python}" "$here/pretrain.py" --config "$here/configs/pretrain/speech_gpu.yaml" "${data[@]}" "$@" \
        out_dir="$dir/mae_run" export="$dir/mae" train.time_limit_s="$pre_s" >"$dir/log.txt" 2>&1 &&
    "${PYTHON:-python}" "$here/finetune_plc.py" --config "$here/configs/plc/speech_gpu.yaml" "${data[@]}" \
        init="$dir/mae" out_dir="$dir/plc_run" export="$dir/plc" train.time_limit_s="$plc_s" >>"$dir/log.txt" 2>&1
}

pipeline tiny-ft &
pipeline tiny &
pipeline e256x4 model.enc_dim=256 model.enc_depth=4 &
pipeline e256x6 model.enc_dim=256 model.enc_depth=6 model.dec_dim=192 &
wait
# The lost packets' envelope errors on VAL_DIR, causal and with one packet of lookahead
# (benchmarks/plc_prediction_error.py, on the CPU): the concealer only gains from trusting a
# model whose errors are about half the bundled model's (benchmarks/results/plc/tune_concealer.md).
for d in "$out"/*/; do
    [ -d "$d/plc" ] || continue
    for la in 0 1; do
        "${PYTHON:-python}" "$here/../benchmarks/plc_prediction_error.py" --model "$d/plc" --data "$val" \
            --every 1 --files 12 --lookahead $la >"$d/envelope_la$la.txt" 2>&1 &
    done
done
wait
for d in "$out"/*/; do
    echo "== $(basename "$d"): $(tail -n 1 "$d/log.txt")"
    for la in 0 1; do
        [ -f "$d/envelope_la$la.txt" ] && echo "   lookahead $la, all lost packets: $(grep '^| all' "$d/envelope_la$la.txt")"
    done
done
