"""The `ds2-onnx` command: parse arguments, call the library, print results (stdout) and diagnostics (stderr)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from . import __version__
from .console import err, fail, out
from .errors import Ds2OnnxError
from .runtime.model_info import INT32_FULL_SCALE

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Deploy the MLPerf DeepSpeech2 model as ONNX and run it on CPUs without torch.")

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL_ENV = "DS2_ONNX_MODEL"


def default_model() -> Path:
    """$DS2_ONNX_MODEL, else the bundled demo model (int8 if present, else fp32)."""
    env = os.environ.get(DEFAULT_MODEL_ENV)
    if env:
        return Path(env)
    for name in ("demo.int8.onnx", "demo.onnx"):
        if (ASSETS / name).is_file():
            return ASSETS / name
    raise Ds2OnnxError(f"no --model given and no bundled default model; pass --model or set {DEFAULT_MODEL_ENV}")


def version_callback(value: bool) -> None:
    if value:
        out.print(f"ds2-onnx {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")] = False,
) -> None:
    pass


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(help="deepspeech.pytorch checkpoint (.pth, legacy or zip format) or a .zip holding one.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="fp32 model path; quantized variants go beside it as OUT.int8.onnx, OUT.int4.onnx. Default: the checkpoint's name with .onnx.")] = None,
    precision: Annotated[str, typer.Option(help="Comma-separated precisions to write: fp32, int8, int4.")] = "fp32,int8",
    input_scale: Annotated[float, typer.Option(help="Multiply float samples in [-1, 1] by this before the STFT. Default 2^31: the int32 range early torchaudio returned to the MLPerf training code (see README).")] = INT32_FULL_SCALE,
    threads: Annotated[Optional[int], typer.Option(help="ONNX Runtime threads for the parity checks.")] = None,
) -> None:
    """Export a checkpoint to self-describing ONNX, verified against PyTorch."""
    from .export.pipeline import export_checkpoint

    precisions = [p.strip() for p in precision.split(",") if p.strip()]
    try:
        with err.status("exporting") as status:
            results = export_checkpoint(checkpoint, output, precisions, input_scale, threads,
                                        progress=lambda m: (status.update(m), err.print(f"· {escape(m)}")))
    except Ds2OnnxError as e:
        raise fail(str(e))
    table = Table(title="exported", title_justify="left")
    for column in ("precision", "file", "size", "max |Δ log-prob| vs PyTorch", "frame agreement"):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(r.precision, str(r.path), f"{r.size_bytes / 1e6:.1f} MB", f"{r.parity.max_abs_diff:.2e}",
                      f"{100 * r.parity.frame_agreement:.2f}% of {r.parity.frames}")
    err.print(table)
    for r in results:
        print(r.path)


@app.command()
def transcribe(
    files: Annotated[list[Path], typer.Argument(help="Audio files in any format libsndfile reads.")],
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help=f"Exported ONNX model. Default: ${DEFAULT_MODEL_ENV} or the bundled demo model.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of results with word timings.")] = False,
    threads: Annotated[Optional[int], typer.Option(help="ONNX Runtime intra-op threads (default: all cores).", min=1)] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Files per model call, grouped by length (more throughput on many files; results still in input order).", min=1)] = 1,
) -> None:
    """Transcribe audio files; text on stdout, one line per file (prefixed by the path when there are several)."""
    from rich.progress import Progress

    from .runtime import SessionOptions, Transcriber

    try:
        transcriber = Transcriber(model or default_model(), SessionOptions(threads=threads))
    except Ds2OnnxError as e:
        raise fail(str(e))

    def report(e: Ds2OnnxError) -> None:
        err.print(f"[bold red]error:[/] {escape(str(e))}")

    def emit(r) -> None:
        if not as_json:
            print(f"{r.source}\t{r.text}" if len(files) > 1 else r.text, flush=True)

    results, failed = [], 0
    with Progress(console=err, transient=True, disable=len(files) < 2) as progress:
        if batch_size == 1:  # stream: each line is printed as soon as its file is done
            task = progress.add_task("transcribing", total=len(files))
            for path in files:
                try:
                    r = transcriber.transcribe(path)
                except Ds2OnnxError as e:
                    report(e)
                    failed += 1
                else:
                    results.append(r)
                    emit(r)
                progress.advance(task)
        else:
            task = progress.add_task("reading", total=2 * len(files))
            feats = []
            for path in files:
                try:
                    feats.append(transcriber.features(path))
                except Ds2OnnxError as e:
                    report(e)
                    failed += 1
                progress.advance(task)
            progress.update(task, description="transcribing", completed=len(files) + failed)
            done: dict[int, object] = {}
            for indices, batch in transcriber.iter_feature_batches(feats, batch_size):
                done.update(zip(indices, batch))
                progress.advance(task, len(indices))
            results = [done[i] for i in range(len(feats))]
            for r in results:
                emit(r)
    if as_json:
        payload = [
            {"path": r.source, "text": r.text, "duration": r.duration, "processing_time": r.processing_time,
             "words": [asdict(w) for w in r.words]}
            for r in results
        ]
        print(json.dumps(payload, indent=2))
    if failed:
        raise fail(f"{failed} of {len(files)} files could not be transcribed")


@app.command()
def info(
    model: Annotated[Path, typer.Argument(help="Exported ONNX model.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metadata as JSON.")] = False,
) -> None:
    """Print the settings recorded in an exported model."""
    from .runtime.session import SessionOptions, create_session

    try:
        _, model_info = create_session(model, SessionOptions(threads=1))
    except Ds2OnnxError as e:
        raise fail(str(e))
    fields = asdict(model_info)
    fields["file_size_bytes"] = model.stat().st_size
    if as_json:
        print(json.dumps(fields, indent=2))
        return
    table = Table(title=str(model), title_justify="left", show_header=False)
    for key, value in fields.items():
        table.add_row(key, repr(value) if isinstance(value, str) else str(value))
    out.print(table)


# validate and download live with the validation code; importing them loads neither torch nor librosa
from .validation.commands import download, validate  # noqa: E402

app.command()(validate)
app.command()(download)


def main() -> None:
    app()
