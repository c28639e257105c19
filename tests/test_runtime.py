"""The torch-free runtime: audio handling, the Transcriber, batches, threads, and bad input."""

import threading

import numpy as np
import onnx
import pytest
import soundfile as sf

from ds2_onnx.errors import AudioError, AudioFileNotFoundError, ModelFileError
from ds2_onnx.runtime import Transcriber, WrongSampleRateError
from ds2_onnx.runtime.audio import load_audio, prepare_audio
from ds2_onnx.runtime.transcriber import plan_batches
from ds2_onnx.validation.reference import ReferencePipeline

from conftest import synthesize


@pytest.fixture(scope="module")
def transcriber(tiny_onnx):
    return Transcriber(tiny_onnx)


def test_file_transcript_equals_the_pytorch_librosa_pipeline(transcriber, tiny_checkpoint, speech_flac):
    """Runtime (numpy features + ORT) against the original (librosa features + PyTorch + loop decoder)."""
    reference = ReferencePipeline(tiny_checkpoint, input_scale=transcriber.info.input_scale).transcribe(speech_flac)
    feats = transcriber.features(speech_flac).values
    np.testing.assert_allclose(feats, reference.features, atol=1e-4)
    log_probs, lengths = transcriber.log_probs(feats[None], np.array([feats.shape[1]]))
    ours = log_probs[0, : int(lengths[0])]
    assert ours.shape == reference.log_probs.shape
    np.testing.assert_allclose(ours, reference.log_probs, atol=1e-3)
    assert (ours.argmax(-1) == reference.log_probs.argmax(-1)).all()
    result = transcriber.transcribe(speech_flac)
    assert len(reference.text) >= 3  # the scaled tiny model emits several labels on this clip
    assert result.text == reference.text
    assert result.duration == pytest.approx(sf.info(str(speech_flac)).duration)
    assert result.processing_time > 0 and result.source == str(speech_flac)


def test_array_input_equals_file_input(transcriber, speech_flac):
    samples, rate = sf.read(str(speech_flac))
    assert transcriber.transcribe(samples, sample_rate=rate).text == transcriber.transcribe(speech_flac).text
    int16 = np.round(samples * 32767).astype(np.int16)
    assert transcriber.transcribe(int16, sample_rate=rate).text == transcriber.transcribe(speech_flac).text


def test_words_have_ordered_times_within_the_audio(transcriber, speech_flac):
    r = transcriber.transcribe(speech_flac)
    assert " ".join(w.text for w in r.words) == " ".join(r.text.split())
    for w in r.words:
        assert 0 <= w.start < w.end <= r.duration + 0.02
    times = [c.time for c in r.chars]
    assert times == sorted(times)


def test_batch_api_equals_one_by_one(transcriber, speech_flac, tone_audio, tmp_path):
    other = synthesize("a short one", tmp_path / "short.wav")
    tone = tmp_path / "tone.flac"
    sf.write(tone, tone_audio, 16000)
    tiny = tmp_path / "tiny.wav"
    sf.write(tiny, tone_audio[:1000], 16000)
    inputs = [speech_flac, other, tone, tiny, speech_flac]
    batched = transcriber.transcribe_batch(inputs, batch_size=3)
    assert [r.source for r in batched] == [str(p) for p in inputs]
    assert [r.text for r in batched] == [transcriber.transcribe(p).text for p in inputs]


def test_stereo_is_mixed_to_mono(transcriber, tmp_path):
    stereo = synthesize("stereo test", tmp_path / "stereo.wav", channels=2)
    samples, _ = sf.read(str(stereo))
    mono = tmp_path / "mono.wav"
    sf.write(mono, samples.mean(axis=1), 16000)
    assert transcriber.transcribe(stereo).text == transcriber.transcribe(mono).text


def test_other_sample_rates_are_resampled(tmp_path):
    path = synthesize("resampling", tmp_path / "r.flac", rate=22050)
    audio = load_audio(path, 16000)
    reference = load_audio(synthesize("resampling", tmp_path / "r16.flac", rate=16000), 16000)
    assert abs(audio.size - reference.size) <= 2
    assert 0 < np.std(audio) < 1


def test_audio_shorter_than_the_receptive_field_gives_an_empty_transcript(transcriber):
    r = transcriber.transcribe(np.full(4000, 0.1), sample_rate=16000)  # 0.25 s < 0.3 s
    assert r.text == "" and r.words == () and r.duration == 0.25


def test_shortest_audio_with_one_output_frame_runs(transcriber):
    r = transcriber.transcribe(np.random.default_rng(0).standard_normal(4800) * 0.1, sample_rate=16000)
    assert isinstance(r.text, str)


def test_threads_share_one_transcriber(transcriber, speech_flac, tone_audio):
    expected = {0: transcriber.transcribe(speech_flac).text, 1: transcriber.transcribe(tone_audio, 16000).text}
    got, errors = [], []

    def work(i):
        try:
            r = transcriber.transcribe(speech_flac) if i % 2 == 0 else transcriber.transcribe(tone_audio, 16000)
            got.append((i % 2, r.text))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 8
    assert all(text == expected[k] for k, text in got)


# -- bad input ---------------------------------------------------------------------------------------

def test_missing_audio_file(transcriber, tmp_path):
    with pytest.raises(AudioFileNotFoundError, match="no such file"):
        transcriber.transcribe(tmp_path / "missing.flac")


def test_not_audio(transcriber, tmp_path):
    path = tmp_path / "notes.flac"
    path.write_text("this is text, not audio")
    with pytest.raises(AudioError, match="cannot decode"):
        transcriber.transcribe(path)


def test_zero_length_file(transcriber, tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError):
        transcriber.transcribe(path)


def test_file_with_no_samples(transcriber, tmp_path):
    path = tmp_path / "nosamples.wav"
    sf.write(path, np.zeros(0), 16000)
    with pytest.raises(AudioError, match="no samples"):
        transcriber.transcribe(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples(transcriber, bad):
    audio = np.zeros(16000)
    audio[100] = bad
    with pytest.raises(AudioError, match="NaN or infinite"):
        transcriber.transcribe(audio, sample_rate=16000)


def test_non_finite_samples_in_a_float_file(transcriber, tmp_path):
    path = tmp_path / "nan.wav"
    audio = np.zeros(16000, dtype=np.float32)
    audio[5] = np.nan
    sf.write(path, audio, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        transcriber.transcribe(path)


def test_array_without_sample_rate(transcriber):
    with pytest.raises(AudioError, match="sample_rate"):
        transcriber.transcribe(np.zeros(16000))


@pytest.mark.parametrize("rate", [0, -16000, 100, 16000.5])
def test_unusable_sample_rate(rate):
    with pytest.raises(WrongSampleRateError):
        prepare_audio(np.zeros(16000), rate, 16000)


def test_resampling_can_be_refused(tiny_onnx):
    strict = Transcriber(tiny_onnx, resample=False)
    with pytest.raises(WrongSampleRateError, match="expects 16000 Hz"):
        strict.transcribe(np.zeros(8000), sample_rate=8000)


def test_errors_are_also_builtin_types(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "x.wav", 16000)
    with pytest.raises(ValueError):
        prepare_audio(np.zeros((10, 2, 2)), 16000, 16000)


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model"):
        Transcriber(tmp_path / "missing.onnx")


def test_tampered_model_file(tiny_onnx, tmp_path):
    data = bytearray(tiny_onnx.read_bytes())
    broken = tmp_path / "truncated.onnx"
    broken.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        Transcriber(broken)


def test_model_without_metadata(tiny_onnx, tmp_path):
    proto = onnx.load(str(tiny_onnx))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    with pytest.raises(ModelFileError, match="no ds2-onnx metadata"):
        Transcriber(plain)


def test_metadata_that_contradicts_the_graph(tiny_onnx, tmp_path):
    proto = onnx.load(str(tiny_onnx))
    for p in proto.metadata_props:
        if p.key == "ds2.labels":
            p.value = '"_ABC"'
        if p.key == "ds2.num_classes":
            p.value = "4"
    edited = tmp_path / "edited.onnx"
    onnx.save(proto, str(edited))
    with pytest.raises(ModelFileError, match="does not match its metadata"):
        Transcriber(edited)


def test_plan_batches_sorts_caps_size_and_padding():
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.lognormal(6.5, 0.75, 200)] + [3500]
    for batch_size, cap in [(1, 0.25), (4, 0.25), (8, 0.25), (8, 0.0), (8, 1.0)]:
        plan = plan_batches(lengths, batch_size, cap)
        assert sorted(i for b in plan for i in b) == list(range(len(lengths)))  # every utterance exactly once
        assert all(1 <= len(b) <= batch_size for b in plan)
        flat = [lengths[i] for b in plan for i in b]
        assert flat == sorted(flat)  # batches hold neighbours in length order
        for b in plan:
            padded, real = max(lengths[i] for i in b) * len(b), sum(lengths[i] for i in b)
            assert padded <= (1 + cap) * real + 1e-9
    assert plan_batches(lengths, 8, 0.25)[-1] == [len(lengths) - 1]  # the 35 s outlier pads nobody
    no_cap = plan_batches(lengths, 8, float("inf"))
    assert [len(b) for b in no_cap] == [8] * 25 + [1]  # plain sorted chunks
    assert plan_batches([], 8) == []


def test_batch_arguments_are_checked(transcriber, speech_flac):
    with pytest.raises(ValueError, match="batch_size"):
        transcriber.transcribe_batch([speech_flac], batch_size=0)
    with pytest.raises(ValueError, match="max_padding"):
        transcriber.transcribe_batch([speech_flac], max_padding=-1)
