"""The shipped default model (int8 TFLite + spec) and its Keras source; see README.md here for the model card."""

import os

# Plain strings: pathlib (with urllib.parse and ipaddress, ~4 ms) is not on the start path of serkit run.
MODELS_DIR = os.path.dirname(os.path.realpath(__file__))
DEFAULT_MODEL = os.path.join(MODELS_DIR, "serkit-ravdess8-int8.tflite")
DEFAULT_KERAS_MODEL = os.path.join(MODELS_DIR, "serkit-ravdess8.keras")
