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
    conv: str = "1d"  # "1d": time convolutions with the cepstra as channels; "2d": 3x3 over the map
    conv_filters: tuple[int, ...] = (48, 64, 64, 64)
    kernel: int = 5
    rnn: str = "lstm"  # or "gru"
    rnn_units: int = 48
    dropout: float = 0.3
    l2: float = 1e-4

    def to_dict(self) -> dict:
        return {**asdict(self), "conv_filters": list(self.conv_filters)}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(**{**d, "conv_filters": tuple(d["conv_filters"])})


def build_model(frames: int, n_features: int, n_classes: int, config: ModelConfig | None = None):  # noqa: ANN201
    import keras
    from keras import layers

    c = config or ModelConfig()
    reg = keras.regularizers.l2(c.l2) if c.l2 else None
    inp = keras.Input((frames, n_features), name="features")
    if c.conv == "1d":
        x = inp
        for filters in c.conv_filters:
            x = layers.Conv1D(filters, c.kernel, padding="same", use_bias=False, kernel_regularizer=reg)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
            x = layers.MaxPooling1D(2)(x)
    else:
        x = layers.Reshape((frames, n_features, 1))(inp)
        for filters in c.conv_filters:
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=reg)(x)
            x = layers.BatchNormalization()(x)
            x = layers.ReLU()(x)
            x = layers.MaxPooling2D((2, 2 if x.shape[2] >= 2 else 1))(x)
        _, t, f, ch = x.shape
        x = layers.Reshape((t, f * ch))(x)
    x = layers.Dropout(c.dropout)(x)
    rnn_cls = {"lstm": layers.LSTM, "gru": layers.GRU}[c.rnn]
    x = rnn_cls(c.rnn_units, return_sequences=True, unroll=True, kernel_regularizer=reg)(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(c.dropout)(x)
    out = layers.Dense(n_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inp, out, name="serkit_cnn_lstm")
