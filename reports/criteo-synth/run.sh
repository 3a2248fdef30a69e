#!/usr/bin/env bash
# The Criteo-shaped study's commands, as plan.md fixes them. Resumable: `compare` caches every
# replica under runs/ and reuses it when its manifest matches, so running a stage again picks
# up where it stopped (about 60 s per ReLU replica on the 2-core box; the judgment trains
# about 200 models). The judgment also keeps each finished pair's numbers in pairs/ (committed
# as it goes), so a fresh machine resumes it without the exports: `run.sh data` then
# `run.sh judgment` again.
#
#   reports/criteo-synth/run.sh data       # the two generator draws (seeds 101 and 202)
#   reports/criteo-synth/run.sh tuning     # rounds 1 and 2 on the tuning draw -> tuning/
#   reports/criteo-synth/run.sh judgment   # the judgment draw, R named -> report.md
#   reports/criteo-synth/run.sh emb-lr     # Adagrad's table learning rate, tuning draw
#   reports/criteo-synth/run.sh breakdown  # where PD lives, judgment draw -> breakdown/
set -euo pipefail
cd "$(dirname "$0")/../.."
SR=${SR:-.venv/bin/steadyrank}
BASE=configs/criteo-study.toml

# Round 1 (candidate 2 was stopped: about 9x ReLU's training time) and round 2.
TUNING="relu,smelu:2+polyak:0.8+mincount:5+lr:0.004+l2:0.1,smelu:2+polyak:0.8+init:0.01+lr:0.004"
TUNING="$TUNING,smelu:2,smelu:2+ema:0.99,smelu:2+ema:0.99+init:0.01,smelu:2+ema:0.99+codistill:1"

# The recipe named on the tuning draw (tuning.md), and the judgment's variants (plan.md).
R=${R:-smelu:2+polyak:0.8+init:0.01+lr:0.004}
JUDGED=${JUDGED:-relu,relu-ensemble:4,smelu:2,$R,relu+polyak:0.8+init:0.01+lr:0.004}

# Issue 41's probe and breakdown (notes.md, "Where the PD lives").
EMB_LR="relu+emb:adagrad:0.01,relu+emb:adagrad:0.05,relu+emb:adagrad:0.2"
ADAGRAD=${ADAGRAD:-emb:adagrad:0.05}
BROKEN_DOWN="relu,smelu:2,relu+$ADAGRAD,smelu:2+$ADAGRAD"

case "${1:-}" in
  data)
    [ -f data/criteo-tune/manifest.json ] || "$SR" data synth --schema criteo \
      --rows 2000000 --seed 101 --out data/criteo-tune
    [ -f data/criteo-judge/manifest.json ] || "$SR" data synth --schema criteo \
      --rows 2000000 --seed 202 --out data/criteo-judge
    ;;
  tuning)
    "$SR" compare --config "$BASE" --set 'data.train=["data/criteo-tune/*.parquet"]' \
      --variants "$TUNING" --vary all --pairs 3 \
      --out reports/criteo-synth/tuning --work-dir runs/criteo-tune
    ;;
  judgment)
    if [ -z "$R" ] || [ -z "$JUDGED" ]; then
      echo "judgment: R and JUDGED are not set yet (tuning.md names R first)" >&2
      exit 2
    fi
    "$SR" compare --config "$BASE" --set 'data.train=["data/criteo-judge/*.parquet"]' \
      --variants "$JUDGED" --winner "$R" --vary all,order --pairs 8 \
      --notes reports/criteo-synth/notes.md --records reports/criteo-synth/pairs \
      --out reports/criteo-synth --work-dir runs/criteo-synth
    ;;
  emb-lr)
    # Issue 41's probe: a learning rate for the tables' row-sparse Adagrad, on the tuning
    # draw's validation split (never the judgment draw), for the breakdown below.
    "$SR" compare --config "$BASE" --set 'data.train=["data/criteo-tune/*.parquet"]' \
      --variants "$EMB_LR" --vary all --pairs 1 --validation \
      --out reports/criteo-synth/emb-lr --work-dir runs/criteo-emb-lr
    ;;
  breakdown)
    # Issue 41: where ReLU's and SmeLU's PD live, with today's defaults (dense Adam over all
    # weights) and with row-sparse Adagrad tables; the judgment's pairs 0 and 1 (the same
    # seeds, so the default variants' replicas are the judgment's own).
    "$SR" compare --config "$BASE" --set 'data.train=["data/criteo-judge/*.parquet"]' \
      --variants "$BROKEN_DOWN" --vary all,order --pairs 2 \
      --records reports/criteo-synth/breakdown/pairs \
      --out reports/criteo-synth/breakdown --work-dir runs/criteo-breakdown
    ;;
  *)
    echo "usage: $0 data|tuning|judgment|emb-lr|breakdown" >&2
    exit 2
    ;;
esac
