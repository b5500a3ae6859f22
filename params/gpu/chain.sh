#!/usr/bin/env bash
# The GPU chain of the README ("On a GPU with a real LLaVA-1.5-7B"), one command per step:
#   prune (width and layer, 15-60%) -> recover (sft+l2 on 5% of the data) -> lmms-eval through
#   the studylib plugin -> import-lmms -> chapter 05 judges the findings on these rows.
#
#   params/gpu/chain.sh MODEL_DIR DATA_JSON IMAGE_DIR OUT [--quick]
#
# MODEL_DIR  a local llava-hf checkpoint: llava-hf/llava-1.5-7b-hf, or a Bunny-style one
#            (SigLIP + Phi-2) in the same layout
# DATA_JSON  LLaVA-v1.5-mix665k / Bunny-695K records (id, image, conversations); IMAGE_DIR holds
#            the images they name. Calibration (10 records) and the recovery subset come from it.
# OUT        a new directory: checkpoints, lmms-eval outputs, OUT/results.jsonl, the chapter.
# --quick    the chain at reduced size, to check it on a GPU in under 10 minutes: ratio 0.3
#            only, 5 recovery steps, and lmms-eval on 20 items of each ShapesWorld task
#            (`export-lmms`, offline) instead of the real benchmarks (those download datasets).
#
# Environment: DEVICE (cuda), DTYPE (bfloat16), RATIOS ("0.15 0.3 0.45 0.6"), BATCH (16),
# TASKS (mmmu_val,gqa,scienceqa_img,mme,pope), PY (.venv/bin/python),
# LMMS (.venv-lmms/bin/python; `make lmms-env` makes it).
set -euo pipefail
[ $# -ge 4 ] || { echo "usage: $0 MODEL_DIR DATA_JSON IMAGE_DIR OUT [--quick]" >&2; exit 2; }
MODEL=$1 DATA=$2 IMAGES=$3 OUT=$4 QUICK=${5:-}
[ -z "$QUICK" ] || [ "$QUICK" = --quick ] || { echo "chain: unknown option $QUICK" >&2; exit 2; }
[ -e "$OUT" ] && { echo "chain: $OUT exists; give a new directory" >&2; exit 2; }
PY=${PY:-.venv/bin/python} LMMS=${LMMS:-.venv-lmms/bin/python}
DEVICE=${DEVICE:-cuda} DTYPE=${DTYPE:-bfloat16} BATCH=${BATCH:-16}
RATIOS=${RATIOS:-0.15 0.3 0.45 0.6} TASKS=${TASKS:-mmmu_val,gqa,scienceqa_img,mme,pope}
ARCH=$(basename "$MODEL") STEPS=() INCLUDE=()
mkdir -p "$OUT"
if [ -n "$QUICK" ]; then
  RATIOS=0.3 STEPS=(--max-steps 5)
  "$PY" -m studylib.cli export-lmms "$OUT/tasks" --limit 20
  TASKS=$("$PY" -c "import json, sys; print(','.join(json.load(open(sys.argv[1]))['tasks']))" \
          "$OUT/tasks/manifest.json")
  INCLUDE=(--include_path "$OUT/tasks")
fi
run() { echo "+ $*" >&2; "$@"; }
on=(--device "$DEVICE" --dtype "$DTYPE")
data=(--data "$DATA" --image-folder "$IMAGES")

score() {  # score DIR LABEL METHOD RATIO RECIPE FRACTION
  run "$LMMS" -m lmms_eval --model studylib \
    --model_args "pretrained=$(realpath "$1"),device=$DEVICE,dtype=$DTYPE" \
    --tasks "$TASKS" "${INCLUDE[@]}" --batch_size "$BATCH" \
    --output_path "$OUT/lmms/$2" --log_samples
  run "$PY" -m studylib.cli import-lmms "$OUT/lmms/$2" --table "$OUT/results.jsonl" \
    --model "$2" --arch "$ARCH" --method "$3" --ratio "$4" --recipe "$5" --data-fraction "$6"
}

score "$MODEL" "$ARCH" none 0 none 1
for method in width layer; do
  for ratio in $RATIOS; do
    name="$ARCH-$method$("$PY" -c "print(round($ratio * 100))")"
    run "$PY" -m studylib.cli prune --model "$MODEL" --method "$method" --ratio "$ratio" \
      "${data[@]}" --calib-samples 10 "${on[@]}" --out "$OUT/$name"
    # --no-cache: the teacher runs online for L2 (a 7B teacher's cached hidden states of 5%
    # of mix665k would take ~150 GB of disk; online, teacher + student fit an H200 in bf16).
    run "$PY" -m studylib.cli recover --student "$OUT/$name" --teacher "$MODEL" --recipe sft+l2 \
      --data-fraction 0.05 "${data[@]}" --no-cache "${on[@]}" "${STEPS[@]}" \
      --out "$OUT/$name-sft-l2"
    score "$OUT/$name-sft-l2" "$name-sft-l2" "$method" "$ratio" sft+l2 0.05
  done
done
run "$PY" -m studylib.cli study params/gpu/05_best_practices.yaml --no-build \
  --set results="$OUT/results.jsonl" archs="[$ARCH]" figures="$OUT/figures"
echo "chain: rows in $OUT/results.jsonl; chapter 05 in book/runs/05_best_practices/"
