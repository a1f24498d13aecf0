"""The shipped default model (int8 TFLite + spec) and its Keras source; see README.md here for the model card."""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = MODELS_DIR / "serkit-ravdess8-int8.tflite"
DEFAULT_KERAS_MODEL = MODELS_DIR / "serkit-ravdess8.keras"
