"""From noisy per-window probabilities to a calm published state.

A moving average of probabilities, a minimum confidence, and hysteresis (a new
emotion must lead the current one by a margin for several windows in a row), so
a Home Assistant automation sees "angry" once, not angry/sad/angry every half second.
"""

from typing import NamedTuple

import numpy as np

from serkit.edge.stream import WindowResult

SILENCE = "silence"


class DecisionSettings(NamedTuple):
    """How window probabilities become states: smoothing, confidence floor, hysteresis, hold and silence."""

    smoothing: float = 0.5  # weight of the newest window (1 = no smoothing)
    min_confidence: float = 0.0
    hysteresis: float = 0.1
    hold: int = 2
    on_silence: str = "nothing"  # or "silence"
    silence_after_s: float = 5.0  # "silence" only once no window has held speech for this long (no flapping)
    state_interval_s: float = 5.0  # re-publish an unchanged state this often, in stream time (0 = every window)


class State(NamedTuple):
    """One decided state: the emotion, its confidence and probabilities, and the audio span it covers."""

    emotion: str
    confidence: float
    probabilities: dict[str, float]
    seq: int
    start_s: float
    end_s: float
    changed: bool


class Decider:
    """Feed WindowResults in order; get a State when one should be published."""

    def __init__(self, labels: tuple[str, ...], settings: DecisionSettings) -> None:
        self.labels = labels
        self.s = settings
        self._avg: np.ndarray | None = None
        self._state: str | None = None
        self._candidate: int | None = None
        self._lead = 0
        self._last_published_s = -np.inf
        self._quiet_since: float | None = None  # end of the first silent window of the current pause

    def update(self, w: WindowResult) -> State | None:
        if not w.speech or w.probabilities is None:
            return self._silence(w)
        self._quiet_since = None
        p = w.probabilities.astype(np.float64)
        a = self.s.smoothing
        self._avg = p if self._avg is None else a * p + (1 - a) * self._avg
        avg = self._avg
        top = int(np.argmax(avg))
        current = self.labels.index(self._state) if self._state in self.labels else None
        changed = False
        if current is None or avg[current] < self.s.min_confidence:
            # Nothing confident to defend (start, after silence, or the state faded): the first confident
            # emotion is taken at once; if none is confident, nothing is published.
            if avg[top] < self.s.min_confidence:
                return None
            changed = top != current
            self._state, current = self.labels[top], top
        elif top != current:
            leads = avg[top] >= self.s.min_confidence and avg[top] >= avg[current] + self.s.hysteresis
            if leads and top == self._candidate:
                self._lead += 1
            elif leads:
                self._candidate, self._lead = top, 1
            else:
                self._candidate, self._lead = None, 0
            if self._lead >= self.s.hold:
                self._state, current, changed = self.labels[top], top, True
        if top == current:
            self._candidate, self._lead = None, 0
        due = w.end_s - self._last_published_s >= self.s.state_interval_s - 1e-9
        if not (changed or due):
            return None
        self._last_published_s = w.end_s
        k = self.labels.index(self._state)
        probs = {lab: round(float(avg[i]), 4) for i, lab in enumerate(self.labels)}
        return State(self._state, round(float(avg[k]), 4), probs, w.seq, w.start_s, w.end_s, changed)

    def _silence(self, w: WindowResult) -> State | None:
        # Each stretch of speech is judged on its own: the average starts again after silence.
        self._avg, self._candidate, self._lead = None, None, 0
        if self.s.on_silence != SILENCE:
            return None
        if self._quiet_since is None:
            self._quiet_since = w.end_s
        # A pause between two phrases is not silence: the state stays until the quiet has lasted.
        if self._state not in (None, SILENCE) and w.end_s - self._quiet_since < self.s.silence_after_s - 1e-9:
            return None
        changed = self._state != SILENCE
        due = w.end_s - self._last_published_s >= self.s.state_interval_s - 1e-9
        if not (changed or (due and self.s.state_interval_s == 0)):
            return None
        self._state = SILENCE
        self._last_published_s = w.end_s
        return State(SILENCE, 0.0, {}, w.seq, w.start_s, w.end_s, changed)
