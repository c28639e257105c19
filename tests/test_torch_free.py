"""The runtime imports and transcribes with torch, librosa and onnx made unimportable."""

import subprocess
import sys
import textwrap

BLOCKED = ("torch", "librosa", "onnx", "scipy", "onnxscript")

SCRIPT = textwrap.dedent(
    """
    import sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {blocked!r}:
                raise ImportError(f"blocked import of {{name}}")
            return None

    sys.meta_path.insert(0, Block())
    from ds2_onnx.runtime import Transcriber
    result = Transcriber(sys.argv[1]).transcribe(sys.argv[2])
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r})
    assert not loaded, loaded
    print("TEXT:" + result.text)
    """
)


def run(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


def test_blocker_really_blocks():
    proc = run("-c", SCRIPT.format(blocked=BLOCKED).replace("from ds2_onnx.runtime import Transcriber", "import torch"), "x", "y")
    assert proc.returncode != 0 and "blocked import of torch" in proc.stderr


def test_runtime_transcribes_without_torch_librosa_or_onnx(tiny_onnx, speech_flac):
    proc = run("-c", SCRIPT.format(blocked=BLOCKED), str(tiny_onnx), str(speech_flac))
    assert proc.returncode == 0, proc.stderr
    from ds2_onnx.runtime import Transcriber

    assert proc.stdout.strip() == "TEXT:" + Transcriber(tiny_onnx).transcribe(speech_flac).text


def test_cli_transcribe_without_torch(tiny_onnx, speech_flac):
    script = SCRIPT.format(blocked=BLOCKED).split("from ds2_onnx.runtime")[0] + textwrap.dedent(
        """
        sys.argv = ["ds2-onnx", "transcribe", sys.argv[1], "--model", sys.argv[2]]
        from ds2_onnx.cli import main
        main()
        """
    )
    proc = run("-c", script, str(speech_flac), str(tiny_onnx))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()  == __import__("ds2_onnx.runtime", fromlist=["Transcriber"]).Transcriber(tiny_onnx).transcribe(speech_flac).text


def test_beam_search_with_a_language_model_without_torch_librosa_or_onnx():
    from pathlib import Path

    from ds2_onnx.cli import ASSETS, DEMO_LM

    clip = sorted((Path(__file__).resolve().parents[1] / "samples" / "demo-test").rglob("*.flac"))[0]
    script = SCRIPT.format(blocked=BLOCKED).replace(
        "Transcriber(sys.argv[1])", "Transcriber(sys.argv[1], lm=sys.argv[3])"
    )
    model, lm = ASSETS / "demo.onnx", ASSETS / DEMO_LM
    proc = run("-c", script, str(model), str(clip), str(lm))
    assert proc.returncode == 0, proc.stderr
    from ds2_onnx.runtime import Transcriber

    text = Transcriber(model, lm=lm).transcribe(clip).text
    assert text and proc.stdout.strip() == "TEXT:" + text
