#!/usr/bin/env bash
# Reproduce the shipped chat mechanism recogniser (inference/shipped/empathy-chat) exactly as
# docs/models/empathy-chat-recogniser-protocol.md declares: ESConv-dev, even conversations for training,
# odd ones held out. CPU only: about 2 min of embeddings plus ~15 min of the shipped ER/IP/EX models on
# 2 busy cores (cached under runs/chat-recogniser), then seconds of logistic regression.
# Usage: scripts/train_chat_recogniser.sh   (DATA=... OUT=... to change where it reads and writes)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/esconv-dev/pairs.csv}
OUT=${OUT:-inference/shipped/empathy-chat}
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" -m inference.empathy.recogniser_train --data "$DATA" --out "$OUT" --cache runs/chat-recogniser
