#!/usr/bin/env bash
# Reproduce the shipped chat mechanism recogniser (inference/shipped/empathy-chat) exactly as
# docs/models/empathy-chat-recogniser-protocol.md declares: ESConv-dev, even conversations for training,
# odd ones held out. CPU only, one torch thread (on 2 shared cores, 2 threads ran the tuning 18x slower):
# about 2 min of embeddings plus ~15 min of the shipped ER/IP/EX models (cached under runs/chat-recogniser),
# seconds of logistic regression for attempts 1-2, then attempt 3's contrastive LoRA tuning of the IP encoder
# (5 folds + 1 refit of MiniLM, ~15 min on an idle core, about an hour on a busy one; the folds are cached too).
# Usage: scripts/train_chat_recogniser.sh   (DATA=... OUT=... to change where it reads and writes;
#        ATTEMPT3=IP3a,IP3b to also run IP3b, ATTEMPT3= to skip attempt 3)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/esconv-dev/pairs.csv}
OUT=${OUT:-inference/shipped/empathy-chat}
PYTHON=${PYTHON:-.venv/bin/python}
ATTEMPT3=${ATTEMPT3-IP3a}
nice -n 10 "$PYTHON" -m inference.empathy.recogniser_train --data "$DATA" --out "$OUT" --cache runs/chat-recogniser \
    --attempt3 "$ATTEMPT3" --threads 1
