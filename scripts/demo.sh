#!/usr/bin/env bash
# The main job, end to end on a fresh machine with the edge install only (no TensorFlow):
# speech → numpy MFCC → the shipped full-int8 model (ai-edge-litert) → emotion per clip.
# Speech comes from espeak-ng (so it needs no corpus); with the RAVDESS sample in ../shared/data
# it also classifies those real 48 kHz recordings.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh edge espeak-ng
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
i=0
for line in "I can't believe you did that again!" "Oh, that's wonderful news, thank you so much." \
            "The meeting is at three o'clock in room four."; do
  i=$((i + 1))
  espeak-ng -v en-us -s 150 -w "$work/espeak-$i.wav" "$line"
done
echo "== serkit predict: shipped int8 model on synthetic speech (espeak-ng; a robot voice, so expect odd guesses)"
.venv/bin/serkit predict models/serkit-ravdess8-int8.tflite "$work" --json
sample="${SER_DATA:-../shared/data}/ravdess-48k-sample"
if [ -d "$sample" ]; then
  echo "== serkit predict: real RAVDESS originals (48 kHz, resampled on the fly; Actor 01 was in training)"
  .venv/bin/serkit predict models/serkit-ravdess8-int8.tflite "$sample"
fi
