#!/usr/bin/env bash
# Run every bundled experiment (configs/experiments/*.toml) and the data they read, timing each step.
# Finished runs are skipped on a rerun (each step is a stage), so this also completes an interrupted set.
# Usage: scripts/experiments.sh [STEP ...]   (default: all; steps: data quality-filtering anneal-hq polyak
#        dataset-valuation mix-selection sft-from dpo). Wall times go to runs/experiments/timings.tsv.
# Needs runs/recipe/tiny (the tiny recipe's corpus, curate, tokenizer and tokenize stages):
#   scripts/fetch_corpus.sh && for s in corpus curate tokenizer tokenize; do
#       herd recipe configs/recipe/tiny.toml --stage $s; done
set -euo pipefail
HERD="${HERD:-.venv/bin/python -m herd.cli}"
PY="${PY:-.venv/bin/python}"
D=runs/experiments/data
TOK=runs/recipe/tiny/tokenizer/tokenizer.model
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(data quality-filtering anneal-hq polyak dataset-valuation mix-selection sft-from dpo)
mkdir -p runs/experiments
[ -d runs/recipe/tiny/tokens ] || { echo "runs/recipe/tiny/tokens missing: see the usage lines of $0" >&2; exit 1; }

data() {
    # quality filtering: the extracted documents (no filtering) less the clean held-out ones, both tokenized
    $PY -m herd.experiment.prepare unfiltered runs/recipe/tiny/curate/01_extract runs/recipe/tiny/curate/07_mix \
        $D/unfiltered 0.02
    for arm in unfiltered filtered; do
        src=$D/unfiltered; [ $arm = filtered ] && src=runs/recipe/tiny/curate/07_mix
        $HERD tokenize configs/tokenize/stdlib.toml tokenizer=$TOK val_fraction=0.02 \
            "sources={web=[\"$src\"]}" out=$D/tokens-$arm
    done
    # dataset valuation: the partly trained model (the default mix without code, half its cosine horizon)
    $HERD pretrain configs/experiments/base/pretrain-tiny.toml run_dir=$D/partly-trained \
        data.shards=runs/recipe/tiny/tokens 'data.mix={general=0.862,multilingual=0.138,code=0.0,anneal=0.0}' \
        schedule.tokens=524288 schedule.total_steps=256
    $PY -m herd.experiment.prepare bundle $D/posttrain-bundle   # post-training data, before parallel runs
}

for step in "${STEPS[@]}"; do
    start=$(date +%s); load0=$(cut -d' ' -f1 /proc/loadavg)
    if [ "$step" = data ]; then data; else $HERD experiment "configs/experiments/$step.toml"; fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$step" "$(( $(date +%s) - start ))" "$load0" "$(cut -d' ' -f1 /proc/loadavg)" \
        "$(date -u +%FT%TZ)" | tee -a runs/experiments/timings.tsv
done
