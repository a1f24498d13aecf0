from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from serkit.edge.audio import write_wav
from serkit.edge.errors import SerkitError
from serkit.trainer import corpora
from serkit.trainer.corpora import Clip
from serkit.trainer.metrics import confusion_matrix, metrics_from_confusion
from serkit.trainer.splits import clip_split, speaker_folds, speaker_split

TONE = (0.1 * np.sin(np.arange(1600) / 5)).astype(np.float32)


def _tree(root, names):
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        write_wav(p, TONE, 16000)
    return root


CASES = {
    "ravdess": (
        [
            "Actor_01/03-01-05-02-01-01-01.wav",
            "Actor_12/03-01-02-01-02-02-12.wav",
            "Actor_12/03-02-05-01-01-01-12.wav",
        ],  # 03-02 is song: not speech, not loaded
        {("angry", "ravdess:01"), ("calm", "ravdess:12")},
    ),
    "crema-d": (
        ["AudioWAV/1001_DFA_ANG_XX.wav", "AudioWAV/1091_IEO_SAD_HI.wav"],
        {("angry", "crema-d:1001"), ("sad", "crema-d:1091")},
    ),
    "tess": (
        ["OAF_angry/OAF_back_angry.wav", "YAF_pleasant_surprised/YAF_bite_ps.wav", "YAF_fear/YAF_chat_fear.wav"],
        {("angry", "tess:OAF"), ("surprised", "tess:YAF"), ("fearful", "tess:YAF")},
    ),
    "emo-db": (
        ["wav/03a01Fa.wav", "wav/16b10Lb.wav", "wav/11a02Wc.wav"],
        {("happy", "emo-db:03"), ("boredom", "emo-db:16"), ("angry", "emo-db:11")},
    ),
    "savee": (
        ["AudioData/DC/a01.wav", "AudioData/KL/su15.wav", "ALL/JK_sa03.wav"],
        {("angry", "savee:DC"), ("surprised", "savee:KL"), ("sad", "savee:JK")},
    ),
    "folders": (
        ["happy/spk1/x.wav", "Sad/spk2/y.wav", "anger/z.wav"],
        {("happy", "c:spk1"), ("sad", "c:spk2"), ("angry", "c:unknown")},
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_each_loader_reads_labels_and_speakers_and_auto_detects(tmp_path, name):
    files, expected = CASES[name]
    root = _tree(tmp_path / "c", files)
    clips = corpora.load_corpus(root, "auto")
    assert {(c.label, c.speaker) for c in clips} == expected
    assert {c.corpus for c in clips} == {name}
    assert corpora.load_corpus(root, name) == clips


def test_manifest_and_combining_corpora(tmp_path):
    _tree(tmp_path / "m", ["a.wav", "sub/b.wav"])
    (tmp_path / "m" / "list.csv").write_text("path,label,speaker\na.wav,Happiness,ann\nsub/b.wav,calm,bob\n")
    clips = corpora.load_corpus(tmp_path / "m" / "list.csv")
    assert [(c.label, c.speaker) for c in clips] == [("happy", "list:ann"), ("calm", "list:bob")]
    rav = _tree(tmp_path / "r", CASES["ravdess"][0])
    both = corpora.load_corpora([tmp_path / "m" / "list.csv", rav])
    assert len(both) == 4 and {c.corpus for c in both} == {"manifest", "ravdess"}


@pytest.mark.parametrize(
    "content, needle",
    [
        ("path,label\na.wav,ecstatic\n", "list.csv:2: unknown label 'ecstatic'"),
        ("path,label\nmissing.wav,happy\n", "list.csv:2: audio file 'missing.wav' not found"),
        ("file,emotion\na.wav,happy\n", "header must name columns path,label"),
        ("path,label\n", "manifest lists no clips"),
    ],
)
def test_bad_manifests(tmp_path, content, needle):
    _tree(tmp_path, ["a.wav"])
    (tmp_path / "list.csv").write_text(content)
    with pytest.raises(SerkitError, match=None) as err:
        corpora.load_corpus(tmp_path / "list.csv")
    assert needle in str(err.value)


def test_a_manifest_that_is_not_text_is_one_line(tmp_path):
    (tmp_path / "list.csv").write_bytes(b"path,label\n\xff\xfe\x00a.wav,happy\n")
    with pytest.raises(SerkitError) as err:
        corpora.load_corpus(tmp_path / "list.csv")
    assert str(err.value).startswith(f"{tmp_path / 'list.csv'}: not a text file, expected a manifest")


def test_label_selection_and_merging():
    present = {"neutral", "calm", "happy", "sad", "surprised"}
    m = corpora.parse_label_map("common6,calm=neutral", present)
    assert m["calm"] == "neutral" and m["happy"] == "happy" and "surprised" not in m
    clips = [Clip(None, lab, "s", "x") for lab in ("calm", "surprised", "sad")]
    assert [c.label for c in corpora.apply_labels(clips, m)] == ["neutral", "sad"]
    with pytest.raises(SerkitError, match="unknown label 'glee'"):
        corpora.parse_label_map("happy,glee", present)


@settings(max_examples=80, deadline=None)
@given(
    speakers=st.lists(st.integers(1, 40), min_size=3, max_size=30),
    k=st.integers(2, 6),
    seed=st.integers(0, 1000),
)
def test_every_split_is_speaker_disjoint(speakers, k, seed):
    clips = [Clip(None, "happy" if i % 2 else "sad", f"x:{s}", "x") for i, s in enumerate(speakers)]
    n_spk = len(set(speakers))
    if n_spk < 2:
        return
    sp = speaker_split(clips, seed=seed)
    tr, va = {c.speaker for c in sp.train}, {c.speaker for c in sp.val}
    assert tr and va and not tr & va and len(sp.train) + len(sp.val) == len(clips)
    if k <= n_spk:
        folds = speaker_folds(clips, k, seed=seed)
        held = [set(f.protocol["held_out_speakers"]) for f in folds]
        assert set().union(*held) == {c.speaker for c in clips}
        assert sum(len(h) for h in held) == n_spk  # each speaker held out exactly once
        for f in folds:
            assert not {c.speaker for c in f.train} & {c.speaker for c in f.val}


def test_named_speakers_and_clip_split_label():
    clips = [Clip(None, "sad", f"ravdess:{s:02d}", "ravdess") for s in range(1, 9) for _ in range(3)]
    sp = speaker_split(clips, val_speakers=["07", "ravdess:08"], test_speakers=["01"])
    assert {c.speaker for c in sp.val} == {"ravdess:07", "ravdess:08"}
    assert {c.speaker for c in sp.test} == {"ravdess:01"}
    with pytest.raises(SerkitError, match="overlap"):
        speaker_split(clips, val_speakers=["01"], test_speakers=["01"])
    with pytest.raises(SerkitError, match="speaker '99' is not in the data"):
        speaker_split(clips, val_speakers=["99"])
    assert clip_split(clips).protocol["kind"] == "speaker-dependent"


def test_metrics_against_a_hand_computed_confusion_matrix():
    # true:  a a a a b b c c c c ; pred: a a b c b b c c a c
    y = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    p = [0, 0, 1, 2, 1, 1, 2, 2, 0, 2]
    cm = confusion_matrix(y, p, 3)
    assert cm.tolist() == [[2, 1, 1], [0, 2, 0], [1, 0, 3]]
    m = metrics_from_confusion(cm, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(7 / 10)
    # recall a 2/4, b 2/2, c 3/4 ; precision a 2/3, b 2/3, c 3/4
    assert m["uar"] == pytest.approx((0.5 + 1.0 + 0.75) / 3)
    f1 = [2 * (2 / 3) * 0.5 / (2 / 3 + 0.5), 2 * (2 / 3) * 1 / (2 / 3 + 1), 0.75]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)


def test_bad_datasets_through_the_cli(tmp_path):
    pytest.importorskip("tensorflow", reason="serkit train needs the [train] extra before it reads any data")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli("train", str(tmp_path / "empty")), "empty", "contains no .wav files")
    _tree(tmp_path / "odd", ["recording1.wav", "x/recording2.wav"])
    assert_one_line_error(run_cli("train", str(tmp_path / "odd")), "odd", "no recognisable clips among 2 WAV")
    assert_one_line_error(run_cli("train", str(tmp_path / "nowhere")), "nowhere", "no such file or folder")
    _tree(tmp_path / "m", ["a.wav"])
    (tmp_path / "m" / "l.csv").write_text("path,label\na.wav,ecstatic\n")
    assert_one_line_error(run_cli("train", str(tmp_path / "m" / "l.csv")), "l.csv:2", "unknown label")
    (tmp_path / "m" / "ok.csv").write_text("path,label,speaker\na.wav,happy,x\n")
    assert_one_line_error(
        run_cli("train", str(tmp_path / "m" / "ok.csv"), "--labels", "happy,glee"), "--labels", "glee"
    )
    assert_one_line_error(run_cli("train", str(tmp_path / "m" / "ok.csv")), "at least 2 labels")


def test_missing_training_extra_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    code = "import sys; sys.modules['tensorflow'] = None; from serkit.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "train", str(tmp_path)], capture_output=True, cwd=ROOT)
    assert proc.returncode == 2
    line = assert_one_line_error(proc, "pip install 'serkit[train]'")
    assert "tensorflow" in line
