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
from .runtime.beam import BeamSearchOptions
from .runtime.model_info import INT32_FULL_SCALE

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Deploy the MLPerf DeepSpeech2 model as ONNX and run it on CPUs without torch.")

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL_ENV = "DS2_ONNX_MODEL"
DEMO_LM = "demo-lm.arpa.gz"
BUNDLED_LM = "bundled"


def default_model() -> Path:
    """$DS2_ONNX_MODEL, else the bundled demo model (int8 if present, else fp32)."""
    env = os.environ.get(DEFAULT_MODEL_ENV)
    if env:
        return Path(env)
    for name in ("demo.int8.onnx", "demo.onnx"):
        if (ASSETS / name).is_file():
            return ASSETS / name
    raise Ds2OnnxError(f"no --model given and no bundled default model; pass --model or set {DEFAULT_MODEL_ENV}")


def resolve_lm(lm: str | None) -> Path | None:
    """--lm's value: a path, or 'bundled' for the demo language model shipped with the package."""
    if lm is None:
        return None
    if lm == BUNDLED_LM:
        if not (ASSETS / DEMO_LM).is_file():
            raise Ds2OnnxError(f"this installation has no bundled language model ({ASSETS / DEMO_LM})")
        return ASSETS / DEMO_LM
    return Path(lm)


def beam_options(lm: str | None, beam_width: int | None, alpha: float | None, beta: float | None,
                 unk_offset: float | None = None, beam_margin: float | None = None,
                 lookahead: bool | None = None) -> BeamSearchOptions | None:
    """Beam search settings from the CLI options: None (greedy) unless --lm, --beam-width or --beam-margin is
    given."""
    if lm is None and (alpha is not None or beta is not None or unk_offset is not None or lookahead is not None):
        raise Ds2OnnxError("--alpha, --beta, --unk-offset and --lookahead/--no-lookahead weight a language model: "
                           "pass --lm too")
    if lm is None and beam_width is None and beam_margin is None:
        return None
    defaults = BeamSearchOptions()
    try:
        return BeamSearchOptions(beam_width or defaults.beam_width, defaults.alpha if alpha is None else alpha,
                                 defaults.beta if beta is None else beta,
                                 unk_offset=defaults.unk_offset if unk_offset is None else unk_offset,
                                 beam_margin=defaults.beam_margin if beam_margin is None else beam_margin,
                                 lookahead=defaults.lookahead if lookahead is None else lookahead)
    except ValueError as e:
        raise Ds2OnnxError(str(e)) from None


def parse_prune(prune: str, order: int) -> list[int]:
    """build-lm's --prune ("0,1") as checked per-order thresholds."""
    from .runtime.lm import prune_thresholds

    try:
        values = [int(v) for v in prune.split(",")]
    except ValueError:
        raise Ds2OnnxError(f"--prune takes comma-separated counts such as 0,1, got {prune!r}") from None
    return prune_thresholds(values, order)


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
    lm: Annotated[Optional[str], typer.Option("--lm", help=f"Word n-gram language model (ARPA, .arpa or .arpa.gz) for beam search; '{BUNDLED_LM}' = the one trained with the bundled demo model. Default: greedy decoding, no LM.")] = None,
    beam_width: Annotated[Optional[int], typer.Option("--beam-width", help=f"Hypotheses kept by beam search (default {BeamSearchOptions.beam_width} with --lm; without --lm, plain CTC prefix beam search).", min=1)] = None,
    beam_margin: Annotated[Optional[float], typer.Option("--beam-margin", help=f"Drop hypotheses scoring more than this (natural log) below the best, even with room in the beam (default {BeamSearchOptions.beam_margin:g}; inf = keep --beam-width).")] = None,
    alpha: Annotated[Optional[float], typer.Option(help=f"LM weight (default {BeamSearchOptions.alpha}, tuned for the bundled LM on the demo corpus's dev split).", min=0.0)] = None,
    beta: Annotated[Optional[float], typer.Option(help=f"Bonus per word (default {BeamSearchOptions.beta}, tuned with alpha).")] = None,
    unk_offset: Annotated[Optional[float], typer.Option("--unk-offset", help=f"Score added to each word outside the LM's vocabulary, <= 0; -inf = vocabulary words only (default {BeamSearchOptions.unk_offset:g}, tuned with alpha).", max=0.0)] = None,
    lookahead: Annotated[Optional[bool], typer.Option("--lookahead/--no-lookahead", help="Rank a word being spelled as its likeliest vocabulary word (default: on).")] = None,
) -> None:
    """Transcribe audio files; text on stdout, one line per file (prefixed by the path when there are several)."""
    from rich.progress import Progress

    from .runtime import SessionOptions, Transcriber

    try:
        transcriber = Transcriber(model or default_model(), SessionOptions(threads=threads),
                                  lm=resolve_lm(lm), beam=beam_options(lm, beam_width, alpha, beta, unk_offset, beam_margin, lookahead))
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


@app.command("build-lm")
def build_lm(
    text: Annotated[list[Path], typer.Argument(help="Text files, one sentence per line, or folders of LibriSpeech transcripts (*.trans.txt).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="ARPA file to write; gzip-compressed if it ends in .gz.")],
    order: Annotated[int, typer.Option(help="n-gram order.", min=1, max=6)] = 3,
    prune: Annotated[str, typer.Option(help="Count thresholds by order, as in KenLM: 0,1 drops bigrams and longer n-grams seen once (a much smaller file); 0,0,1 only trigrams; 0 keeps everything.")] = "0,1",
) -> None:
    """Build an interpolated Kneser-Ney word n-gram LM (ARPA) from text, for `transcribe --lm`."""
    from .runtime.lm import estimate, read_sentences, write_arpa

    try:
        thresholds = parse_prune(prune, order)
        with err.status("reading text"):
            sentences = read_sentences(text)
        err.print(f"· {len(sentences):,} sentences, {sum(map(len, sentences)):,} words")
        with err.status(f"estimating a {order}-gram model"):
            model = estimate(sentences, order, thresholds)
        write_arpa(model, output)
    except Ds2OnnxError as e:
        raise fail(str(e))
    except OSError as e:
        raise fail(f"cannot write {output}: {e}")
    counts = ", ".join(f"{len(t):,} {n}-grams" for n, t in enumerate(model.tables, 1))
    err.print(f"· {counts}; {output.stat().st_size / 1e6:.2f} MB")
    print(output)


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
from .validation.commands import download, tune_lm, validate  # noqa: E402

app.command()(validate)
app.command("tune-lm")(tune_lm)
app.command()(download)


def main() -> None:
    app()
