"""The `ds2-onnx validate`, `tune-lm` and `download` commands, registered by ds2_onnx.cli.

Imported when the CLI starts, so it imports only typer, rich and the beam search's options (numpy) at module
level: the validation code, and with it torch, librosa and matplotlib, are loaded inside the commands.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..console import err, fail, out
from ..runtime.beam import BeamSearchOptions

GATE_EXIT_CODE = 3  # a gate failed: distinct from usage errors (1, and 2 from typer)
SHOWN_DIFFERENCES = 5


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _se(value: float | None) -> str:
    return "" if value is None else f" ±{value:.2f}"


def report_table(report) -> Table:
    table = Table(title=f"validation on {report.dataset}", title_justify="left")
    for column in ("variant", "WER", "CER", "ΔWER", "differ", "max |Δlp|", "p50", "p90", "p99", "RTF", "audio", "wall"):
        table.add_column(column, justify="left" if column == "variant" else "right", no_wrap=True)
    for v in report.variants:
        lat = v.latency
        table.add_row(
            f"{v.name}*" if v.is_baseline else v.name, f"{v.wer:.2f}", f"{v.cer:.2f}",
            "—" if v.wer_delta is None else f"{v.wer_delta:+.2f}" + _se(v.wer_delta_se),
            "—" if v.is_baseline else str(len(v.differing)), _num(v.max_logprob_diff, ".1e"),
            f"{lat.p50:.3f}", f"{lat.p90:.3f}", f"{lat.p99:.3f}", f"{lat.mean_rtf:.3f}",
            f"{lat.audio_seconds:.1f}", f"{lat.wall_seconds:.1f}",
        )
    table.caption = (f"* baseline ({report.baseline}). {report.evaluated} evaluated, {len(report.skipped)} skipped. "
                     "ΔWER (± its standard error over the utterances), differ (transcripts unlike the baseline's) "
                     "and max |Δlp| (log-probs) are against the baseline; latency p50/p90/p99, audio and wall in seconds, RTF = mean processing / audio.")
    table.caption_justify = "left"
    return table


def _stdout() -> Console:
    """The results console; wide enough for the table when stdout is a file or pipe (rich assumes 80 columns)."""
    return out if out.is_terminal else Console(highlight=False, soft_wrap=True, width=140)


def validate(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="LibriSpeech split name (test-clean, test-other, dev-clean, dev-other) found under --data-dir, a LibriSpeech-layout folder, or a manifest CSV of wav_path,txt_path lines.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Exported ONNX model; every precision beside it (X.onnx, X.int8.onnx, X.int4.onnx) is evaluated.")],
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", help="PyTorch checkpoint to run as the reference (needs torch and librosa). Without it the fp32 ONNX model is the baseline.")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write every figure, per-utterance transcripts and machine info to this JSON file.")] = None,
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Write latency CDF and RTF-vs-duration PNGs into this folder (needs matplotlib).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Evaluate only the first N utterances (shortest first for folders).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Processes evaluating utterances in parallel.")] = 1,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Threads per worker for ONNX Runtime and torch (default: cores / workers).")] = None,
    max_wer_delta: Annotated[Optional[float], typer.Option("--max-wer-delta", help="Exit with code 3 if a variant's WER exceeds the baseline's by more than this many points.")] = None,
    max_p99: Annotated[Optional[float], typer.Option("--max-p99", min=0, help="Exit with code 3 if an ONNX variant's p99 latency exceeds this many seconds.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where split names are looked up (<dir>/LibriSpeech/<split>). Default: $DS2_ONNX_DATA or ~/.cache/ds2-onnx.")] = None,
    lm: Annotated[Optional[str], typer.Option("--lm", help="Decode every variant, and the reference, by beam search with this ARPA LM ('bundled' = the demo LM), as `transcribe --lm` does. Default: greedy, as the MLPerf reference.")] = None,
    beam_width: Annotated[Optional[int], typer.Option("--beam-width", min=1, help=f"Beam width (default {BeamSearchOptions.beam_width} with --lm; without --lm, plain CTC prefix beam search).")] = None,
    beam_margin: Annotated[Optional[float], typer.Option("--beam-margin", help="Beam search score margin, as for transcribe.")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="LM weight, as for transcribe.", min=0.0)] = None,
    beta: Annotated[Optional[float], typer.Option(help="Word bonus, as for transcribe.")] = None,
    unk_offset: Annotated[Optional[float], typer.Option("--unk-offset", max=0.0, help="Out-of-vocabulary offset, as for transcribe.")] = None,
    lookahead: Annotated[Optional[bool], typer.Option("--lookahead/--no-lookahead", help="LM look-ahead, as for transcribe (default: on).")] = None,
) -> None:
    """Compare WER, transcripts, log-probs and latency of every exported precision (and PyTorch) on a dataset."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..cli import beam_options, resolve_lm
    from ..errors import Ds2OnnxError
    from .validate import check_gates, run_validation, summary_lines, write_json

    if plots is not None:
        from .plots import require_matplotlib

        try:
            require_matplotlib()
        except Ds2OnnxError as e:
            raise fail(str(e))

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    try:
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task("loading models", total=None)

            def on_start(data, config):
                progress.update(task, description=f"validating {', '.join(config.names)}", total=len(data))

            def on_result(result):
                if result.error is not None:
                    progress.console.print(f"[yellow]skipped[/] {escape(result.id)}: {escape(result.error)}")
                progress.advance(task)

            report = run_validation(dataset, model, checkpoint, limit, workers, threads, data_dir,
                                    resolve_lm(lm), beam_options(lm, beam_width, alpha, beta, unk_offset, beam_margin, lookahead),
                                    on_start=on_start, on_result=on_result)
    except Ds2OnnxError as e:
        raise fail(str(e))

    failures = check_gates(report, max_wer_delta, max_p99)
    console = _stdout()
    console.print(report_table(report))
    for line in summary_lines(report):
        console.print(line, markup=False)
    for v in report.variants:
        for d in v.differing[:SHOWN_DIFFERENCES]:
            console.print(f"  {v.name} ≠ {report.baseline} on {d.id}: {d.variant!r} vs {d.baseline!r}", markup=False)
        if len(v.differing) > SHOWN_DIFFERENCES:
            console.print(f"  … and {len(v.differing) - SHOWN_DIFFERENCES} more for {v.name}" +
                      (" (all in --json)" if json_path else ""))

    if json_path is not None:
        payload = report.to_json()
        payload["gates"] = {"max_wer_delta": max_wer_delta, "max_p99": max_p99, "failures": failures}
        try:
            write_json(payload, json_path)
        except OSError as e:
            raise fail(f"cannot write {json_path}: {e}")
        err.print(f"· wrote {escape(str(json_path))}")
    if plots is not None:
        from .plots import write_plots

        try:
            for path in write_plots(report, plots):
                err.print(f"· wrote {escape(str(path))}")
        except OSError as e:
            raise fail(f"cannot write plots to {plots}: {e}")
    if failures:
        for message in failures:
            err.print(f"[bold red]gate failed:[/] {escape(message)}")
        raise typer.Exit(GATE_EXIT_CODE)


def _json_float(value: float) -> float | str:
    """An unk offset or beam margin for JSON, which has no infinity: ±inf as the string "-inf" or "inf" (float()
    reads it back)."""
    return value if math.isfinite(value) else f"{value:g}"


def _floats(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise fail(f"{option} takes comma-separated numbers, got {text!r}") from None
    if not values:
        raise fail(f"{option} needs at least one value")
    return values


def tune_lm(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Development data to tune on: a LibriSpeech split name, a LibriSpeech-layout folder or a manifest CSV (as for validate).")],
    lm: Annotated[str, typer.Option("--lm", help="ARPA language model (.arpa or .arpa.gz), or 'bundled' for the demo LM.")],
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="Exported ONNX model. Default: $DS2_ONNX_MODEL or the bundled demo model.")] = None,
    alpha: Annotated[str, typer.Option(help="Comma-separated LM weights to try.")] = "0.5,0.65,0.8,1",
    beta: Annotated[str, typer.Option(help="Comma-separated word bonuses to try.")] = "-1,0,1,2",
    beam_width: Annotated[int, typer.Option("--beam-width", min=1, help="Beam width used for every point.")] = BeamSearchOptions.beam_width,
    beam_margin: Annotated[float, typer.Option("--beam-margin", help="Beam search score margin used for every point (as for transcribe).")] = BeamSearchOptions.beam_margin,
    lookahead: Annotated[bool, typer.Option("--lookahead/--no-lookahead", help="LM look-ahead for every point (as for transcribe).")] = BeamSearchOptions.lookahead,
    unk_offset: Annotated[str, typer.Option("--unk-offset", help="Comma-separated out-of-vocabulary offsets to try (<= 0; -inf = vocabulary words only), e.g. 0,-10,-inf.")] = f"{BeamSearchOptions.unk_offset:g}",
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Tune on N utterances spread evenly over the dataset.")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Processes decoding grid points in parallel (default: all cores).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="ONNX Runtime threads for the model pass.")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write every grid point to this JSON file.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where split names are looked up (as for validate).")] = None,
) -> None:
    """Pick the LM weight (alpha), word bonus (beta) and unk offset for `transcribe --lm` by WER on development data."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..cli import default_model, resolve_lm
    from ..errors import Ds2OnnxError
    from .tune import tune_lm as run_tuning
    from .validate import write_json

    alphas, betas, offsets = _floats(alpha, "--alpha"), _floats(beta, "--beta"), _floats(unk_offset, "--unk-offset")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task("loading", total=None)
            report = run_tuning(
                dataset, model or default_model(), resolve_lm(lm), alphas, betas, beam_width, offsets, limit, jobs,
                threads, data_dir, beam_margin=beam_margin, lookahead=lookahead,
                on_stage=lambda stage, total: progress.update(task, description=stage, total=total, completed=0),
                on_step=lambda: progress.advance(task),
                on_skip=lambda uid, e: progress.console.print(f"[yellow]skipped[/] {escape(uid)}: {escape(e)}"),
            )
    except (Ds2OnnxError, ValueError) as e:
        raise fail(str(e))
    best = report.best
    table = Table(title=f"beam search (width {report.beam_width}, margin {beam_margin:g}{'' if lookahead else ', no look-ahead'}) on {report.dataset}, {report.utterances} utterances",
                  title_justify="left")
    for column in ("alpha", "beta", "unk offset", "WER", "CER", "s/utt"):
        table.add_column(column, justify="right")
    for p in sorted(report.points, key=lambda p: (p.alpha, p.beta, -p.unk_offset)):
        style = "bold" if p is best else None
        table.add_row(f"{p.alpha:g}", f"{p.beta:g}", f"{p.unk_offset:g}", f"{p.wer:.2f}", f"{p.cer:.2f}",
                      f"{p.seconds_per_utterance:.3f}", style=style)
    console = _stdout()
    console.print(table)
    console.print(f"greedy: WER {report.greedy.wer:.2f} CER {report.greedy.cer:.2f}; beam without LM: WER "
                  f"{report.no_lm.wer:.2f} CER {report.no_lm.cer:.2f}", markup=False)
    console.print(f"best: --alpha {best.alpha:g} --beta {best.beta:g} --unk-offset {best.unk_offset:g} "
                  f"(WER {best.wer:.2f}, CER {best.cer:.2f})", markup=False)
    if best.alpha in (min(alphas), max(alphas)) and len(alphas) > 1 or best.beta in (min(betas), max(betas)) and len(betas) > 1:
        err.print("[yellow]note:[/] the best point is on the edge of the grid; widen it")
    if json_path is not None:
        payload = {
            "dataset": report.dataset, "utterances": report.utterances, "skipped": report.skipped,
            "beam_width": report.beam_width,
            "beam_margin": _json_float(beam_margin), "lookahead": lookahead,
            "greedy": {"wer": report.greedy.wer, "cer": report.greedy.cer},
            "beam_no_lm": {"wer": report.no_lm.wer, "cer": report.no_lm.cer},
            "points": [{"alpha": p.alpha, "beta": p.beta, "unk_offset": _json_float(p.unk_offset), "wer": p.wer,
                        "cer": p.cer, "seconds_per_utterance": p.seconds_per_utterance} for p in report.points],
            "best": {"alpha": best.alpha, "beta": best.beta, "unk_offset": _json_float(best.unk_offset), "wer": best.wer,
                     "cer": best.cer},
        }
        try:
            write_json(payload, json_path)
        except OSError as e:
            raise fail(f"cannot write {json_path}: {e}")
        err.print(f"· wrote {escape(str(json_path))}")


def download(
    split: Annotated[str, typer.Argument(help="LibriSpeech split: test-clean, test-other, dev-clean or dev-other.")],
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Folder to put LibriSpeech/<split> in. Default: $DS2_ONNX_DATA or ~/.cache/ds2-onnx.")] = None,
    url: Annotated[Optional[str], typer.Option("--url", help="Fetch the tarball from this URL instead of the OpenSLR mirror.")] = None,
    md5: Annotated[Optional[str], typer.Option("--md5", help="Expected MD5 of the tarball (default: the sum OpenSLR publishes for the split).")] = None,
) -> None:
    """Download, verify and extract a LibriSpeech evaluation split; prints the folder it is in."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from ..errors import Ds2OnnxError
    from .download import download_split

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    try:
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task(f"downloading {split}", total=None)
            path = download_split(
                split, data_dir, url, md5,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                log=lambda message: progress.console.print(f"· {escape(message)}"),
            )
    except Ds2OnnxError as e:
        raise fail(str(e))
    print(path)
