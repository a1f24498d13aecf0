"""The compact CNN-LSTM.

Convolution blocks read the (time x cepstrum) map; the recurrent layer runs over
the pooled time axis and is unrolled, the only form TF 2.21's int8 converter
handles (a WHILE-loop RNN makes calibration segfault). Averaging the recurrent
outputs over time, rather than taking the last state, keeps the decision from
hanging on whatever the final frames happen to hold.

With `centre` on, the convolutions read each window twice: as it is, and with the
window's own mean per coefficient taken away (cepstral mean subtraction inside the
graph, so the features on the Pi stay as they are). A voice's or a microphone's fixed
colouring is a constant offset in the cepstra; the centred copy keeps how the voice
moves, the plain one loudness and overall tilt, which carry arousal. Off by default:
on RAVDESS it gained 1.6 points over five held-out-speaker runs on three folds, but
lost 1.0 over all five folds with two seeds each (ten runs paired with the plain
model's), and its wider first convolution adds 11 KB to the int8 file, past 150 KB.
Feeding a learned map of the window mean into the first convolution instead (the
same function away from the edges, at a fifth of the weights) lost 1-5 points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    conv_filters: tuple[int, ...] = (48, 64, 64, 64)
    kernel: int = 5  # time convolutions with the cepstra as channels
    centre: bool = False  # also feed the window minus its own mean (see above)
    rnn: str = "lstm"  # or "gru"
    rnn_units: int = 48
    dropout: float = 0.3
    l2: float = 1e-4

    def to_dict(self) -> dict:
        return {**asdict(self), "conv_filters": list(self.conv_filters)}


def build_model(frames: int, n_features: int, n_classes: int, config: ModelConfig | None = None):  # noqa: ANN201
    from serkit.trainer.tf_import import import_keras

    keras = import_keras()
    layers = keras.layers

    c = config or ModelConfig()
    reg = keras.regularizers.l2(c.l2) if c.l2 else None
    inp = keras.Input((frames, n_features), name="features")
    x = inp
    if c.centre:
        window_mean = layers.GlobalAveragePooling1D(keepdims=True, name="window_mean")(inp)
        centred = layers.Subtract(name="centred")([inp, window_mean])
        x = layers.Concatenate(name="with_centred")([inp, centred])
    for filters in c.conv_filters:
        x = layers.Conv1D(filters, c.kernel, padding="same", use_bias=False, kernel_regularizer=reg)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling1D(2)(x)
    x = layers.Dropout(c.dropout)(x)
    rnn_cls = {"lstm": layers.LSTM, "gru": layers.GRU}[c.rnn]
    x = rnn_cls(c.rnn_units, return_sequences=True, unroll=True, kernel_regularizer=reg)(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(c.dropout)(x)
    out = layers.Dense(n_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inp, out, name="serkit_cnn_lstm")
