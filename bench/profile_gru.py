"""Speed and fidelity of DeepSpeech2 model variants on CPU at batch 1: PyTorch vs ONNX Runtime GRU op vs Scan
rewrite, fp32 / int8 / int4, all timed interleaved in one process (shared machines are noisy: read ratios).

    python bench/profile_gru.py --hidden 2560 --seconds 10            # the default table (full-size model)
    python bench/profile_gru.py --hidden 2560 --variants int8,int4_b128,int4_b128@spin --reps 7
    python bench/profile_gru.py --hidden 2560 --profile int4_b128      # ORT per-op profile of one variant
    python bench/profile_gru.py --hidden 2560 --reps 0 --batch 4 --calibrate-bn   # fidelity only, diverse labels
    python bench/profile_gru.py --list                                 # what each variant name means

Models are random-weight MLPerf-layout DS2s (`random_model(ModelConfig(hidden_size=H), seed=0)`), exported
with the TorchScript exporter and cached under --cache. Times are the model call only unless a column says
end to end (features + model + greedy decode of a 10 s clip). Fidelity is measured against the fp32 Scan
graph (identical to PyTorch fp32 within 1e-6) on the same random spectrogram. With random BatchNorm stats the
greedy label is the same in every frame (agreement is then trivially 100 %): use --calibrate-bn for a
meaningful frame-agreement figure.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------------------------------
# variants


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # "torch" | "ort"
    model: str = ""  # model key for ORT variants (see build_model)
    spin: bool = False
    threads: int | None = None  # None: --threads
    optimization: str = "all"
    note: str = ""


def _ort(name, model, note="", **kw):
    return Variant(name, "ort", model, note=note, **kw)


QUANT = {  # model key -> quantize_model keyword arguments
    "int8": dict(precision="int8"),  # per-tensor weight scales (the default)
    "int8_perchannel": dict(precision="int8", per_channel=True),
    "int8_tensoract": dict(precision="int8", per_frame=False),  # before per-frame activation scales
    "uint8": dict(precision="int8", weight_type="uint8"),
    "int4_b32": dict(precision="int4", block_size=32),
    "int4_b64": dict(precision="int4", block_size=64),
    "int4_b128": dict(precision="int4", block_size=128),
    "int4_b128_tensoract": dict(precision="int4", block_size=128, per_frame=False),
    "int4_b256": dict(precision="int4", block_size=256),
    "int4_b128_asym": dict(precision="int4", block_size=128, symmetric=False),
    "int4all_b128": dict(precision="int4", block_size=128, input_projection="int4"),
    "int4all_b32": dict(precision="int4", block_size=32, input_projection="int4"),
    "int4_b128_acc0": dict(precision="int4", block_size=128, accuracy_level=0),
}

VARIANTS = {
    v.name: v
    for v in [
        Variant("torch_fp32", "torch", note="PyTorch eager fp32"),
        Variant("torch_int8", "torch", note="PyTorch quantize_dynamic qint8 on GRU+Linear (the bar to beat)"),
        Variant("torch_int8@t1", "torch", note="torch_int8 with 1 thread", threads=1),
        Variant("torch_int8_autograd", "torch", note="torch_int8 without inference_mode (as the MLPerf harness ran)"),
        _ort("gru_fp32", "gru_fp32", "ORT, ONNX GRU op (TorchScript export)"),
        _ort("scan_fp32", "scan_fp32", "ORT, GRU -> MatMul + Scan (gru_to_scan)"),
        _ort("loop_fp32", "loop_fp32", "ORT, GRU -> MatMul + Loop (Gather per step)"),
        _ort("int8", "int8", "quantize_dynamic QInt8 per-tensor, all MatMuls (incl. Scan body)"),
        _ort("int8_perchannel", "int8_perchannel", "as int8, weight scales per output channel"),
        _ort("int8_tensoract", "int8_tensoract", "as int8, one activation scale per tensor for the input projections"),
        _ort("uint8", "uint8", "as int8 with QUInt8 weights"),
        _ort("int4_b32", "int4_b32", "recurrent MatMulNBits 4b sym block 32 acc4; input proj int8"),
        _ort("int4_b64", "int4_b64", "recurrent MatMulNBits 4b sym block 64 acc4; input proj int8"),
        _ort("int4_b128", "int4_b128", "recurrent MatMulNBits 4b sym block 128 acc4; input proj int8"),
        _ort("int4_b128_tensoract", "int4_b128_tensoract", "as int4_b128, one activation scale per tensor for the input projections"),
        _ort("int4_b256", "int4_b256", "recurrent MatMulNBits 4b sym block 256 acc4; input proj int8"),
        _ort("int4_b128_asym", "int4_b128_asym", "as int4_b128, asymmetric (zero points)"),
        _ort("int4all_b128", "int4all_b128", "every MatMul 4b block 128 acc4 (input proj too)"),
        _ort("int4all_b32", "int4all_b32", "every MatMul 4b block 32 acc4 (input proj too)"),
        _ort("int4_b128_acc0", "int4_b128_acc0", "as int4_b128 with accuracy_level=0 (fp32 compute)"),
        _ort("int4_b128_loop", "int4_b128_loop", "as int4_b128 with Loop instead of Scan"),
        _ort("nbits8_b128", "nbits8_b128", "recurrent 8-bit MatMulNBits block 128 acc4; input proj int8"),
        _ort("nbits8_b256", "nbits8_b256", "recurrent 8-bit MatMulNBits block 256 acc4; input proj int8"),
        _ort("int4_b256@spin", "int4_b256", "int4_b256, allow_spinning=1", spin=True),
        _ort("int8@spin", "int8", "int8, allow_spinning=1", spin=True),
        _ort("int4_b128@spin", "int4_b128", "int4_b128, allow_spinning=1", spin=True),
        _ort("int4_b32@spin", "int4_b32", "int4_b32, allow_spinning=1", spin=True),
        _ort("int8@t1", "int8", "int8, 1 thread", threads=1),
        _ort("int4_b256@t1", "int4_b256", "int4_b256, 1 thread", threads=1),
        _ort("int4_b128@t1", "int4_b128", "int4_b128, 1 thread", threads=1),
        _ort("int4_b128@basic", "int4_b128", "int4_b128, ORT_ENABLE_BASIC optimizations", optimization="basic"),
        _ort("int8@basic", "int8", "int8, ORT_ENABLE_BASIC (no DynamicQuantizeMatMul fusion)", optimization="basic"),
    ]
}

DEFAULT_VARIANTS = (
    "torch_fp32,torch_int8,gru_fp32,scan_fp32,int8,int8_perchannel,uint8,"
    "int4_b32,int4_b64,int4_b128,int4_b256,int4all_b128"
)


# ---------------------------------------------------------------------------------------------------------------
# building models


def export_fp32(torch_model, path: Path) -> None:
    import torch

    spect = torch.randn(1, 1, 161, 200)
    lengths = torch.tensor([200])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            torch_model, (spect, lengths), str(path), dynamo=False, opset_version=17,
            input_names=["spectrogram", "lengths"], output_names=["log_probs", "output_lengths"],
            dynamic_axes={"spectrogram": {0: "batch", 3: "frames"}, "lengths": {0: "batch"},
                          "log_probs": {0: "batch", 1: "out_frames"}, "output_lengths": {0: "batch"}},
        )


def calibrate_final_batchnorm(model, seed: int) -> None:
    """Set the classifier's BatchNorm running stats to the GRU outputs' own statistics on random input.

    With random running stats the constant BN offset dominates the logits and the greedy label is the same in
    every frame, so frame agreement says nothing; a trained model's BN matches its activations, and then the
    greedy path changes label from frame to frame (used for --calibrate-bn fidelity runs).
    """
    import torch

    rng = np.random.default_rng(seed + 1000)
    spect = torch.from_numpy(rng.standard_normal((2, 1, 161, 301)).astype(np.float32))
    bn = model.fc[0].module[0]
    seen = {}
    hook = bn.register_forward_hook(lambda mod, inp, out: seen.setdefault("x", inp[0]))
    with torch.no_grad():
        model(spect, torch.tensor([301, 301]))
        hook.remove()
        bn.running_mean.copy_(seen["x"].mean(0))
        bn.running_var.copy_(seen["x"].var(0) + 1e-3)


def scan_to_loop(model):
    """Experiment: the Scan of gru_to_scan as a Loop whose body Gathers frame i (to compare per-step overhead)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    nodes = []
    for k, node in enumerate(g.node):
        if node.op_type != "Scan":
            nodes.append(node)
            continue
        body = next(a.g for a in node.attribute if a.name == "body")
        h0, xzr, xh = node.input
        p = f"loop{k}"
        shape, trip = f"{p}_shape", f"{p}_trip"
        g.initializer.append(numpy_helper.from_array(np.array(0, np.int64), f"{p}_zero"))
        nodes.append(helper.make_node("Shape", [xzr], [shape]))
        nodes.append(helper.make_node("Gather", [shape, f"{p}_zero"], [trip], axis=0))
        new_body_nodes = [
            helper.make_node("Gather", [xzr, "iter"], [body.input[1].name], axis=0),
            helper.make_node("Gather", [xh, "iter"], [body.input[2].name], axis=0),
            *body.node,
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ]
        loop_body = helper.make_graph(
            new_body_nodes, body.name + "_loop",
            [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
             helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
             body.input[0]],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), *body.output],
            initializer=list(body.initializer),
        )
        nodes.append(helper.make_node("Loop", [trip, "", h0], list(node.output), name=node.name, body=loop_body))
    g.ClearField("node")
    g.node.extend(nodes)
    onnx.checker.check_model(out)
    return out


class Models:
    """Builds (and caches) every ONNX model a variant needs."""

    def __init__(self, cache: Path, hidden: int, layers: int, seed: int, log, calibrate_bn: bool = False):
        from ds2_onnx.export import code_digest

        # keyed on the export code too: a change to quantize.py or rewrite.py rebuilds the models
        self.dir = cache / (f"h{hidden}_l{layers}_s{seed}" + ("_bncal" if calibrate_bn else "") + f"-{code_digest()}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hidden, self.layers, self.seed, self.log = hidden, layers, seed, log
        self.calibrate_bn = calibrate_bn
        self._torch = None

    def torch_model(self):
        if self._torch is None:
            from ds2_onnx.export.model import ModelConfig
            from ds2_onnx.export.synthetic import random_model

            self._torch = random_model(ModelConfig(hidden_size=self.hidden, hidden_layers=self.layers), seed=self.seed)
            if self.calibrate_bn:
                calibrate_final_batchnorm(self._torch, self.seed)
        return self._torch

    def path(self, key: str) -> Path:
        path = self.dir / f"{key}.onnx"
        if path.is_file():
            return path
        import onnx

        from ds2_onnx.export.quantize import quantize_model
        from ds2_onnx.export.rewrite import gru_to_scan

        tmp = path.with_suffix(".tmp")
        t0 = time.perf_counter()
        if key == "gru_fp32":
            export_fp32(self.torch_model(), tmp)
        elif key == "scan_fp32":
            onnx.save(gru_to_scan(onnx.load(str(self.path("gru_fp32")))), str(tmp))
        elif key == "loop_fp32":
            onnx.save(scan_to_loop(onnx.load(str(self.path("scan_fp32")))), str(tmp))
        elif key == "int4_b128_loop":
            quantize_model(self.path("loop_fp32"), tmp, **QUANT["int4_b128"])
        elif key.startswith("nbits8_b"):  # experiment: recurrent weights as 8-bit MatMulNBits (int8 compute)
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            from ds2_onnx.export import quantize as q

            with tempfile.TemporaryDirectory() as d:
                top = q._dynamic_int8(onnx.load(str(self.path("scan_fp32"))), Path(d), True, "int8", subgraphs=False)
            nb = MatMulNBitsQuantizer(top, bits=8, block_size=int(key.split("_b")[1]), is_symmetric=True,
                                      accuracy_level=4, op_types_to_quantize=("MatMul",))
            nb.process()
            onnx.save(nb.model.model, str(tmp))
        elif key in QUANT:
            info = quantize_model(self.path("scan_fp32"), tmp, **QUANT[key])
            (self.dir / f"{key}.json").write_text(json.dumps(info, indent=1))
        else:
            raise KeyError(key)
        os.replace(tmp, path)
        self.log(f"built {path.name} in {time.perf_counter() - t0:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
        return path


# ---------------------------------------------------------------------------------------------------------------
# runners


def ort_session(path: Path, threads: int, spin: bool, optimization: str, profile_prefix: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def make_runner(variant: Variant, models: Models, threads: int):
    """A callable (spect, lengths) -> log_probs (numpy) for the variant."""
    if variant.kind == "torch":
        import torch

        model = models.torch_model()
        if variant.name.startswith("torch_int8"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(
                    model, {torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8
                )

        def run(spect, lengths):
            torch.set_num_threads(variant.threads or threads)
            if variant.name.endswith("_autograd"):
                return model(torch.from_numpy(spect), torch.from_numpy(lengths))[0].detach().numpy()
            with torch.inference_mode():
                return model(torch.from_numpy(spect), torch.from_numpy(lengths))[0].numpy()

        return run
    session = ort_session(models.path(variant.model), variant.threads or threads, variant.spin, variant.optimization)

    def run(spect, lengths):
        return session.run(["log_probs"], {"spectrogram": spect, "lengths": lengths})[0]

    return run


def fidelity(candidate: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    diff = float(np.abs(candidate - reference).max())
    agree = float((candidate.argmax(-1) == reference.argmax(-1)).mean())
    return diff, agree


def features_and_decode_seconds(seconds: float, reps: int) -> float | None:
    """Median time of the runtime's feature extraction + greedy decode for one clip (None if unavailable)."""
    try:
        from ds2_onnx.runtime.decoding import decode
        from ds2_onnx.runtime.features import compute_features
    except ImportError:
        return None
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
    log_probs = rng.standard_normal((int(50 * seconds), 29)).astype(np.float32)
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        compute_features(audio, 320, 160)
        decode(log_probs, "_'ABCDEFGHIJKLMNOPQRSTUVWXYZ ", 0, 0.02)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


# ---------------------------------------------------------------------------------------------------------------
# profiling


def profile(variant: Variant, models: Models, threads: int, spect, lengths, runs: int = 2) -> None:
    """ORT's profiler on one variant: time per op, split into Scan-body ops and top-level ops."""
    if variant.kind != "ort":
        raise SystemExit("--profile needs an ORT variant")
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(models.path(variant.model), variant.threads or threads, variant.spin,
                              variant.optimization, profile_prefix=str(Path(tmp) / "prof"))
        session.run(None, {"spectrogram": spect, "lengths": lengths})  # warm-up (also profiled; dropped below)
        wall = []
        for _ in range(runs):
            t0 = time.perf_counter()
            session.run(None, {"spectrogram": spect, "lengths": lengths})
            wall.append(time.perf_counter() - t0)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs_seen = [e for e in events if e.get("name") == "model_run"]
    start_measured = runs_seen[1]["ts"] if len(runs_seen) > 1 else 0
    per_op = collections.defaultdict(lambda: [0.0, 0])
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < start_measured:
            continue
        node = e["name"][: -len("_kernel_time")]
        op = e["args"].get("op_name", "?")
        per_op[(op, node)][0] += e["dur"] / runs
        per_op[(op, node)][1] += 1
    body_names = {"RecMatMul", "RecAdd", "RecSplit", "AddZR", "SigmoidZR", "SplitZR", "MulR", "AddH", "TanhH",
                  "SubHN", "MulZ", "AddState", "Output", "RecMatMulZR", "RecMatMulH"}
    print(f"\nORT profile of {variant.name} ({variant.note}); wall per run {np.median(wall):.3f} s "
          "(profiling adds overhead to small ops)")
    print(f"{'op':24s} {'node':44s} {'ms/run':>9s} {'calls/run':>10s} {'us/call':>9s}")
    for (op, node), (us, n) in sorted(per_op.items(), key=lambda kv: -kv[1][0])[:28]:
        calls = n / runs
        print(f"{op:24s} {node[-44:]:44s} {us / 1e3:9.2f} {calls:10.0f} {us / max(calls, 1):9.1f}")
    groups = collections.defaultdict(float)
    for (op, node), (us, n) in per_op.items():
        base = node.split("/")[-1].split("_quant")[0].split("_Q4")[0]
        if op in ("Scan", "Loop"):
            groups["Scan/Loop node (includes its body)"] += us
        elif base in body_names:
            groups["  of which recurrent MatMul" if "MatMul" in node else "  of which gate math / copies"] += us
        elif "InputMatMul" in node:
            groups["input projections (all frames)"] += us
        elif op.startswith("Conv") or "conv" in node:
            groups["convolutions"] += us
        else:
            groups["other top-level ops"] += us
    for k, us in groups.items():
        print(f"  {k:40s} {us / 1e3:9.1f} ms/run")


# ---------------------------------------------------------------------------------------------------------------
# main


def environment(threads: int) -> dict:
    import onnx
    import onnxruntime as ort

    cpu = platform.processor() or "?"
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16") if f" {f}" in flags]
    l3 = "?"
    try:
        l3 = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
    except OSError:
        pass
    env = {
        "cpu": cpu, "isa": ",".join(isa), "l3": l3,
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": threads, "python": platform.python_version(), "numpy": np.__version__,
        "onnx": onnx.__version__, "onnxruntime": ort.__version__,
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:
        pass
    return env


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=2560)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length: 100 spectrogram frames per second (+1)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5, help="timed runs per variant (interleaved), after one warm-up")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help="comma-separated; see --list")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ds2_onnx_bench")
    ap.add_argument("--profile", metavar="VARIANT", help="print ORT's per-op profile of one variant and exit")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--calibrate-bn", action="store_true",
                    help="fidelity on a model whose classifier BatchNorm matches its activations (diverse greedy "
                         "labels); combine with --reps 0 for a fidelity-only table")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)

    if args.list:
        for v in VARIANTS.values():
            print(f"{v.name:18s} {v.note}")
        return 0
    logging.getLogger().setLevel(logging.ERROR)
    log = lambda msg: print(f"# {msg}", file=sys.stderr, flush=True)  # noqa: E731
    models = Models(args.cache, args.hidden, args.layers, args.seed, log, args.calibrate_bn)
    frames = int(round(100 * args.seconds)) + 1
    rng = np.random.default_rng(0)
    spect = rng.standard_normal((args.batch, 1, 161, frames)).astype(np.float32)
    lengths = np.full(args.batch, frames, np.int64)

    if args.profile:
        profile(VARIANTS[args.profile], models, args.threads, spect, lengths)
        return 0

    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; see --list")
    variants = [VARIANTS[n] for n in names]
    env = environment(args.threads)
    log(f"env: {env}")

    # Build everything first (slow, cached), then open all sessions, then time.
    for v in variants:
        if v.kind == "ort":
            models.path(v.model)
    runners, outputs = {}, {}
    for v in variants:
        t0 = time.perf_counter()
        runners[v.name] = make_runner(v, models, args.threads)
        outputs[v.name] = runners[v.name](spect, lengths)  # warm-up
        log(f"{v.name}: loaded + warm-up {time.perf_counter() - t0:.1f} s")
    reference = outputs.get("scan_fp32")
    if reference is None:
        reference = make_runner(VARIANTS["scan_fp32"], models, args.threads)(spect, lengths)

    times = {v.name: [] for v in variants}
    for rep in range(args.reps):
        order = names[rep % len(names):] + names[: rep % len(names)]  # rotate to spread drift evenly
        for name in order:
            t0 = time.perf_counter()
            runners[name](spect, lengths)
            times[name].append(time.perf_counter() - t0)
        log(f"rep {rep + 1}/{args.reps} done")
    fd = features_and_decode_seconds(args.seconds, 5)
    env["load_avg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None

    bar = next((n for n in ("torch_int8", "torch_int8@t1") if n in times), None)
    gru = "gru_fp32" if "gru_fp32" in times else None
    print(f"\nDS2 hidden={args.hidden} layers={args.layers}, batch {args.batch}, {args.seconds:g} s clip "
          f"({frames} spectrogram frames -> {outputs[names[0]].shape[1]} output frames), {args.threads} threads, "
          f"{args.reps} interleaved reps (median [min-max])")
    print(f"CPU {env['cpu']} ({env['isa']}, L3 {env['l3']}), {env['cores_available']} cores available; "
          f"onnxruntime {env['onnxruntime']}, onnx {env['onnx']}, torch {env.get('torch', '-')}, numpy {env['numpy']}; "
          f"load avg {env['load_avg'][0]:.2f} -> {env['load_avg_end'][0]:.2f}")
    head = (f"{'variant':16s} {'median s':>9s} {'min-max':>13s} {'RTF':>6s} "
            + (f"{'x vs ' + bar:>15s} " if bar else "")
            + (f"{'x vs gru_fp32':>13s} " if gru else "")
            + (f"{'e2e s':>7s} {'e2e x ' + bar:>16s} " if fd is not None and bar else "")
            + f"{'max|dlogp|':>10s} {'argmax agree':>12s} {'MB':>6s}")
    print(head)
    rows = []
    for v in variants:
        t = np.array(times[v.name] or [float("nan")])
        med = float(np.median(t))
        diff, agree = fidelity(outputs[v.name], reference)
        size = models.path(v.model).stat().st_size / 1e6 if v.kind == "ort" else float("nan")
        row = dict(variant=v.name, note=v.note, median_s=med, min_s=float(t.min()), max_s=float(t.max()),
                   rtf=med / args.seconds, max_abs_dlogp=diff, argmax_agreement=agree, size_mb=size, times=t.tolist())
        line = f"{v.name:16s} {med:9.3f} {t.min():6.3f}-{t.max():6.3f} {med / args.seconds:6.3f} "
        if bar:
            row["speedup_vs_torch_int8"] = float(np.median(times[bar] or [float("nan")])) / med
            line += f"{row['speedup_vs_torch_int8']:15.2f} "
        if gru:
            row["speedup_vs_gru_fp32"] = float(np.median(times[gru] or [float("nan")])) / med
            line += f"{row['speedup_vs_gru_fp32']:13.2f} "
        if fd is not None and bar:
            e2e, e2e_bar = med + fd, float(np.median(times[bar] or [float("nan")])) + fd
            row["e2e_s"] = e2e
            line += f"{e2e:7.3f} {e2e_bar / e2e:16.2f} "
        line += f"{diff:10.2e} {100 * agree:11.1f}% {size:6.0f}"
        print(line)
        rows.append(row)
    if fd is not None:
        print(f"features + greedy decode of the clip: {fd * 1e3:.1f} ms (added for the e2e columns; audio decoding excluded)")
    top2 = np.sort(reference, axis=-1)[..., -2:]
    margin = float(np.median(top2[..., 1] - top2[..., 0]))
    print("fidelity: vs scan_fp32 (== PyTorch fp32 to ~1e-6) on one random spectrogram; 'x vs' = median ratio; "
          f"fp32 log-prob std {reference.std():.2f}, median top-1/top-2 margin {margin:.3f} nats, "
          f"{len(np.unique(reference.argmax(-1)))} distinct greedy labels over {reference.shape[0] * reference.shape[1]} frames")
    if args.json:
        args.json.write_text(json.dumps({"env": env, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
