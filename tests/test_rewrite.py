"""gru_to_scan: the GRU -> MatMul + Scan rewrite is exact, general enough, and refuses what it cannot do."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ds2_onnx.export.rewrite import count_ops, gru_to_scan

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

# fp32 rewrite vs GRU op / PyTorch, on log-probs. Observed differences are ~1e-6 (float rounding order).
LOGPROB_ATOL = 1e-4
# Single GRU layer outputs (values in [-1, 1]) vs ONNX Runtime's GRU kernel.
GRU_ATOL = 1e-5
HIDDEN = 64


def _session(model: onnx.ModelProto):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def export_torchscript(model) -> onnx.ModelProto:
    """The project's export call (TorchScript exporter, opset 17, dynamic batch and time), in memory."""
    import io

    spect = torch.randn(2, 1, 161, 100)
    lengths = torch.tensor([100, 80])
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (spect, lengths), buf, dynamo=False, opset_version=17,
            input_names=["spectrogram", "lengths"], output_names=["log_probs", "output_lengths"],
            dynamic_axes={"spectrogram": {0: "batch", 3: "frames"}, "lengths": {0: "batch"},
                          "log_probs": {0: "batch", 1: "out_frames"}, "output_lengths": {0: "batch"}},
        )
    return onnx.load_from_string(buf.getvalue())


@pytest.fixture(scope="module")
def torch_model():
    from ds2_onnx.export.model import ModelConfig
    from ds2_onnx.export.synthetic import random_model

    model = random_model(ModelConfig(hidden_size=HIDDEN), seed=0)
    with torch.no_grad():  # sharper posteriors than PyTorch's default init gives at this size
        for layer in model.rnns:
            layer.rnn.weight_ih_l0.mul_(1.5)
        model.fc[0].module[1].weight.mul_(6.0)
    return model


@pytest.fixture(scope="module")
def gru_graph(torch_model) -> onnx.ModelProto:
    model = export_torchscript(torch_model)
    model.metadata_props.add(key="ds2.test", value="kept")
    assert count_ops(model, "GRU") == 3
    return model


@pytest.fixture(scope="module")
def scan_graph(gru_graph) -> onnx.ModelProto:
    return gru_to_scan(gru_graph)


def test_structure(gru_graph, scan_graph):
    assert count_ops(scan_graph, "GRU") == 0
    scans = [n for n in scan_graph.graph.node if n.op_type == "Scan"]
    assert len(scans) == 3
    inits = {t.name: t for t in scan_graph.graph.initializer}
    # one input-projection MatMul per layer with W^T (I, 3H), plus the classifier's MatMul
    top = [n for n in scan_graph.graph.node if n.op_type == "MatMul"]
    shapes = sorted(tuple(inits[n.input[1]].dims) for n in top if n.input[1] in inits)
    assert shapes == sorted([(672, 3 * HIDDEN), (HIDDEN, 3 * HIDDEN), (HIDDEN, 3 * HIDDEN), (HIDDEN, 29)])
    for scan in scans:
        body = next(a.g for a in scan.attribute if a.name == "body")
        body_inits = {t.name: t for t in body.initializer}
        matmuls = [n for n in body.node if n.op_type == "MatMul"]
        assert len(matmuls) == 1, "all three gates in one recurrent MatMul"
        assert tuple(body_inits[matmuls[0].input[1]].dims) == (HIDDEN, 3 * HIDDEN)
        ops = {n.op_type for n in body.node}
        assert {"Sigmoid", "Tanh"} <= ops and "Concat" not in ops
    # the Squeeze of the num_directions axis is gone: the Scan writes (T, B, H) and the next layer reads it
    for scan in scans:
        users = {n.op_type for n in scan_graph.graph.node if scan.output[1] in n.input}
        assert users and not users & {"Squeeze", "Unsqueeze"}
    assert [(p.key, p.value) for p in scan_graph.metadata_props] == [("ds2.test", "kept")]


def test_input_model_untouched(gru_graph):
    before = gru_graph.SerializeToString()
    gru_to_scan(gru_graph)
    assert gru_graph.SerializeToString() == before


@pytest.mark.parametrize(
    "lengths",
    [[31], [32], [101], [100, 57], [257, 31, 200], [31, 31]],
    ids=lambda v: "x".join(map(str, v)),
)
def test_exact_vs_gru_op_and_pytorch(torch_model, gru_graph, scan_graph, lengths):
    rng = np.random.default_rng(sum(lengths))
    batch, frames = len(lengths), max(lengths)
    spect = rng.standard_normal((batch, 1, 161, frames)).astype(np.float32)
    lens = np.array(lengths, np.int64)
    feeds = {"spectrogram": spect, "lengths": lens}
    ref_lp, ref_len = _session(gru_graph).run(None, feeds)
    lp, out_len = _session(scan_graph).run(None, feeds)
    with torch.no_grad():
        t_lp, t_len = torch_model(torch.from_numpy(spect), torch.from_numpy(lens))
    assert lp.shape == ref_lp.shape == tuple(t_lp.shape)
    if frames == 31:
        assert lp.shape[1] == 1  # the receptive field: 31 spectrogram frames give one output frame
    np.testing.assert_array_equal(out_len, ref_len)
    np.testing.assert_array_equal(out_len, t_len.numpy())
    assert np.abs(lp - ref_lp).max() <= LOGPROB_ATOL
    assert np.abs(lp - t_lp.numpy()).max() <= LOGPROB_ATOL


# ------------------------------------------------------------------------------------------------------------------
# single GRU graphs: the variants the rewrite supports, checked against ONNX Runtime's GRU kernel


def single_gru(
    hidden=5, inputs=3, opset=17, direction="forward", lbr=1, bias=True, initial_h=False, y_h=False,
    squeeze=False, extra_attrs=None, seq_lens=False, seed=0, const_weights=True,
) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    W = rng.uniform(-0.7, 0.7, (dirs, 3 * hidden, inputs)).astype(np.float32)
    R = rng.uniform(-0.7, 0.7, (dirs, 3 * hidden, hidden)).astype(np.float32)
    B = rng.uniform(-0.7, 0.7, (dirs, 6 * hidden)).astype(np.float32)
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R")]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", inputs])]
    if not const_weights:
        inits = inits[1:]
        graph_inputs.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, list(W.shape)))
    gru_inputs = ["X", "W", "R", "B" if bias else "", "", ""]
    if bias:
        inits.append(numpy_helper.from_array(B, "B"))
    if seq_lens:
        graph_inputs.append(helper.make_tensor_value_info("L", TensorProto.INT32, ["B"]))
        gru_inputs[4] = "L"
    if initial_h:
        graph_inputs.append(helper.make_tensor_value_info("H0", TensorProto.FLOAT, [dirs, "B", hidden]))
        gru_inputs[5] = "H0"
    while gru_inputs and gru_inputs[-1] == "":
        gru_inputs.pop()
    attrs = dict(hidden_size=hidden, linear_before_reset=lbr)
    if direction != "forward":
        attrs["direction"] = direction
    attrs.update(extra_attrs or {})
    nodes = [helper.make_node("GRU", gru_inputs, ["Y", "Y_h"] if y_h else ["Y"], name="gru", **attrs)]
    outputs = []
    if squeeze:
        if opset >= 13:
            inits.append(numpy_helper.from_array(np.array([1], np.int64), "axes"))
            nodes.append(helper.make_node("Squeeze", ["Y", "axes"], ["Ys"], name="sq"))
        else:
            nodes.append(helper.make_node("Squeeze", ["Y"], ["Ys"], name="sq", axes=[1]))
        nodes.append(helper.make_node("Relu", ["Ys"], ["out"], name="relu"))
        outputs.append(helper.make_tensor_value_info("out", TensorProto.FLOAT, ["T", "B", hidden]))
    else:
        outputs.append(helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", dirs, "B", hidden]))
    if y_h:
        outputs.append(helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [dirs, "B", hidden]))
    graph = helper.make_graph(nodes, "g", graph_inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def _feeds(model, batch, frames, seed=1):
    rng = np.random.default_rng(seed)
    names = {i.name for i in model.graph.input}
    inputs = model.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    feeds = {"X": rng.standard_normal((frames, batch, inputs)).astype(np.float32)}
    if "H0" in names:
        hidden = model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value
        feeds["H0"] = rng.uniform(-1, 1, (1, batch, hidden)).astype(np.float32)
    return feeds


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(squeeze=True),
        dict(lbr=0),
        dict(direction="reverse"),
        dict(direction="reverse", lbr=0, y_h=True, initial_h=True),
        dict(bias=False),
        dict(initial_h=True, y_h=True, squeeze=True),
        dict(opset=11, squeeze=True, y_h=True),
        dict(opset=11, initial_h=True, lbr=0),
        dict(extra_attrs=dict(activations=["Sigmoid", "Tanh"])),
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default",
)
@pytest.mark.parametrize("batch,frames", [(1, 1), (3, 7)])
def test_single_gru_matches_ort_gru(kwargs, batch, frames):
    model = single_gru(**kwargs)
    rewritten = gru_to_scan(model)
    assert count_ops(rewritten, "GRU") == 0 and count_ops(rewritten, "Scan") == 1
    feeds = _feeds(model, batch, frames)
    expected = _session(model).run(None, feeds)
    got = _session(rewritten).run(None, feeds)
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert e.shape == g.shape
        assert np.abs(e - g).max() <= GRU_ATOL
    if kwargs.get("squeeze"):
        assert count_ops(rewritten, "Squeeze") == int(kwargs.get("initial_h", False))  # Y squeeze folded away


def test_two_grus_and_names_do_not_clash():
    model = single_gru(squeeze=True)
    # chain a second GRU on the first one's output, reusing the same weights
    g = model.graph
    out = g.output[0]
    g.node.append(helper.make_node("GRU", ["out", "W2", "R"], ["Y2"], name="gru_scan", hidden_size=5, linear_before_reset=1))
    rng = np.random.default_rng(3)
    g.initializer.append(numpy_helper.from_array(rng.uniform(-1, 1, (1, 15, 5)).astype(np.float32), "W2"))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("Y2", TensorProto.FLOAT, ["T", 1, "B", 5]))
    del out
    rewritten = gru_to_scan(model)
    assert count_ops(rewritten, "Scan") == 2
    feeds = _feeds(model, 2, 6)
    np.testing.assert_allclose(_session(rewritten).run(None, feeds)[0], _session(model).run(None, feeds)[0], atol=GRU_ATOL)


def test_model_without_gru_is_returned_as_a_copy():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out = gru_to_scan(model)
    assert out is not model and out.SerializeToString() == model.SerializeToString()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(direction="bidirectional"), "bidirectional"),
        (dict(seq_lens=True), "sequence_lens"),
        (dict(extra_attrs=dict(activations=["Relu", "Tanh"])), "activations"),
        (dict(extra_attrs=dict(activations=["HardSigmoid", "Tanh"], activation_alpha=[0.2])), "activations"),
        (dict(extra_attrs=dict(clip=5.0)), "clip"),
        (dict(extra_attrs=dict(layout=1)), "layout"),
        (dict(const_weights=False), "constants"),
    ],
    ids=["bidirectional", "sequence_lens", "relu", "hardsigmoid", "clip", "layout", "dynamic-W"],
)
def test_refuses_unsupported_grus(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gru_to_scan(single_gru(**kwargs))


def test_refuses_old_opsets():
    model = single_gru(opset=11)
    model.opset_import[0].version = 9
    with pytest.raises(ValueError, match="opset"):
        gru_to_scan(model)
