"""The compact CNN-LSTM.

Convolution blocks read the (time x cepstrum) map; the recurrent layer runs over
the pooled time axis and is unrolled, the only form TF 2.21's int8 converter
handles (a WHILE-loop RNN makes calibration segfault). Averaging the recurrent
outputs over time, rather than taking the last state, keeps the decision from
hanging on whatever the final frames happen to hold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    conv_filters: tuple[int, ...] = (48, 64, 64, 64)
    kernel: int = 5  # time convolutions with the cepstra as channels
    separable: bool = False  # depthwise-separable convolutions: a filter per channel, then a 1x1 mix
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
    for filters in c.conv_filters:
        if c.separable:
            x = layers.SeparableConv1D(
                filters, c.kernel, padding="same", use_bias=False, depthwise_regularizer=reg, pointwise_regularizer=reg
            )(x)
        else:
            x = layers.Conv1D(filters, c.kernel, padding="same", use_bias=False, kernel_regularizer=reg)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling1D(2)(x)
    x = layers.Dropout(c.dropout)(x)
    x = layers.LSTM(c.rnn_units, return_sequences=True, unroll=True, kernel_regularizer=reg)(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(c.dropout)(x)
    out = layers.Dense(n_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inp, out, name="serkit_cnn_lstm")
