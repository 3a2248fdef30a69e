#!/usr/bin/env bash
# The Criteo-shaped study, round 2 (plan.md). Each stage caches its replicas under runs/ and
# keeps each finished pair's numbers in a committed records folder, so running a stage again
# (here or on a fresh machine, after `run.sh data`) resumes where it stopped.
#
#   reports/criteo-synth-2/run.sh data        # the three draws (seeds 303, 404, 505)
#   reports/criteo-synth-2/run.sh baseline    # step 1: the ReLU a team would ship
#   reports/criteo-synth-2/run.sh curve       # step 2: PD and log loss against beta
#   reports/criteo-synth-2/run.sh candidates  # step 3 (its variants are fixed in plan.md)
#   reports/criteo-synth-2/run.sh judgment    # step 4, once
#   reports/criteo-synth-2/run.sh replication
set -euo pipefail
cd "$(dirname "$0")/../.."
SR=${SR:-.venv/bin/steadyrank}
HERE=reports/criteo-synth-2
BASE=configs/criteo-study.toml
RELU=${RELU:-configs/criteo-relu-2.toml}   # written by step 1's rule
TUNE='data.train=["data/criteo-tune-2/*.parquet"]'

# Step 1's first list; its fifth item (the best with +einit:zeros and +init:0.01) is added
# by the rule after these ran (plan.md), as BASELINE_MORE.
BASELINE="relu,relu+emb:adagrad:0.02,relu+emb:adagrad:0.05,relu+emb:adagrad:0.1"
BASELINE="$BASELINE,relu+emb:lazy_adam:0.002,relu+emb:ftrl:0.05"
BASELINE_MORE=${BASELINE_MORE:-}

CURVE="relu,smelu:0.25,smelu:0.5,smelu:1,smelu:2,smelu:4"
CURVE="$CURVE,relu+nonorm,smelu:0.25+nonorm,smelu:0.5+nonorm,smelu:1+nonorm,smelu:2+nonorm"
CURVE="$CURVE,smelu:4+nonorm"

# Fixed in plan.md (2026-12-06, after the curve named beta* = 0.5) before they trained.
CANDIDATES=${CANDIDATES:-smelu:0.5,smelu:0.5+emb:lazy_adam:0.002+ema:0.995}
CANDIDATES="$CANDIDATES,smelu:0.5+emb:lazy_adam:0.002+ema:0.995+init:0.01"
CANDIDATES="$CANDIDATES,smelu:0.5+ema:0.995+codistill:1"
# The winner, named by plan.md's rule on the tuning draw (candidates/winner.md, 2026-12-06).
W=${W:-smelu:0.5+emb:lazy_adam:0.002+ema:0.995+init:0.01}
JUDGED=${JUDGED:-relu,relu-ensemble:4,smelu:0.5,$W,relu+emb:lazy_adam:0.002+ema:0.995+init:0.01}

compare() {  # compare STAGE CONFIG DATA VARIANTS [more flags]
  local stage=$1 config=$2 data=$3 variants=$4
  shift 4
  "$SR" compare --config "$config" --set "$data" --variants "$variants" \
    --records "$HERE/$stage/pairs" --out "$HERE/$stage" --work-dir "runs/criteo2-$stage" "$@"
}

case "${1:-}" in
  data)
    for pair in tune-2:303 judge-2:404 replicate-2:505; do
      folder=data/criteo-${pair%%:*}
      [ -f "$folder/manifest.json" ] || "$SR" data synth --schema criteo --rows 2000000 \
        --seed "${pair##*:}" --out "$folder"
    done
    ;;
  baseline)
    compare baseline "$BASE" "$TUNE" "$BASELINE${BASELINE_MORE:+,$BASELINE_MORE}" \
      --vary all --pairs 2
    ;;
  curve)
    compare curve "$RELU" "$TUNE" "$CURVE" --vary all,order --pairs 4
    "$SR" report "$HERE/curve" --curve   # curve.md/png/json: the plots and the chosen beta
    ;;
  candidates)
    [ -n "$CANDIDATES" ] || { echo "candidates: fix them in plan.md first" >&2; exit 2; }
    compare candidates "$RELU" "$TUNE" "relu,$CANDIDATES" --vary all,order --pairs 4
    "$SR" report "$HERE/candidates" --pick-winner   # plan.md's winner rule: winner.md
    ;;
  judgment)
    [ -n "$W" ] && [ -n "$JUDGED" ] || { echo "judgment: W and JUDGED are not set" >&2; exit 2; }
    compare judgment "$RELU" 'data.train=["data/criteo-judge-2/*.parquet"]' "$JUDGED" \
      --winner "$W" --vary all,order --pairs 8 --notes "$HERE/notes.md"
    ;;
  replication)
    [ -n "$W" ] || { echo "replication: W is not set" >&2; exit 2; }
    compare replication "$RELU" 'data.train=["data/criteo-replicate-2/*.parquet"]' \
      "relu,$W" --winner "$W" --vary all --pairs 8
    "$SR" report "$HERE/replication" --replicates "$HERE/judgment"   # replication.md/json
    ;;
  *)
    echo "usage: $0 data|baseline|curve|candidates|judgment|replication" >&2
    exit 2
    ;;
esac
