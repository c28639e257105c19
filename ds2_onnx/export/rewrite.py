"""ONNX graph rewrites applied after export.

`gru_to_scan` replaces every ONNX `GRU` op by an input-projection MatMul over all frames followed by a `Scan`
over time whose body holds a single recurrent MatMul. ONNX Runtime has no quantized GRU kernel, but it does
quantize MatMuls, also inside a Scan body (`EnableSubgraph`), so after this rewrite the recurrent weights —
the bytes read once per output frame, i.e. the cost of inference at batch 1 — can be stored as int8 or int4.

The rewrite is a pure ONNX transformation: it reads the GRU's attributes and its constant W/R/B, and does not
depend on which exporter wrote the graph. In fp32 it is exact up to float rounding (≈1e-6).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["gru_to_scan", "count_ops"]

_DEFAULT_ACTIVATIONS = ["Sigmoid", "Tanh"]


def count_ops(model_or_graph, op_type: str) -> int:
    """Number of `op_type` nodes in a model or graph, subgraphs (Scan/Loop/If bodies) included."""
    graph = model_or_graph.graph if isinstance(model_or_graph, onnx.ModelProto) else model_or_graph
    total = 0
    for node in graph.node:
        total += node.op_type == op_type
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                total += count_ops(attr.g, op_type)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                total += sum(count_ops(g, op_type) for g in attr.graphs)
    return total


def gru_to_scan(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` where each top-level ONNX `GRU` op is a MatMul (+Add) input projection and a `Scan`.

    Supported: forward or reverse direction, `linear_before_reset` 0 or 1, optional bias, optional
    `initial_h` (zeros when absent), dynamic batch and time, opset >= 11 (the opset is left unchanged).
    Refused with ValueError: bidirectional GRUs, a `sequence_lens` input, activations other than the
    default (Sigmoid, Tanh), `clip`, `layout=1`, and W/R/B that are not constants.

    The GRU's `Y` (T, 1, B, H) is produced by the Scan; a consumer `Squeeze` of the num_directions axis
    (what PyTorch exporters emit) is removed and the Scan writes its (T, B, H) output directly.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    opset = _default_opset(out)
    if opset < 11:
        raise ValueError(f"gru_to_scan needs opset >= 11 (Scan-11 and friends), the model has opset {opset}")
    if not any(n.op_type == "GRU" and n.domain in ("", "ai.onnx") for n in graph.node):
        return out

    ctx = _Context(graph, opset)
    new_nodes: list[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        if node.op_type == "GRU" and node.domain in ("", "ai.onnx"):
            new_nodes.extend(_rewrite_gru(node, index, ctx))
        else:
            new_nodes.append(node)
    new_nodes = _fold_unsqueeze_squeeze(new_nodes, graph, ctx)
    new_nodes = _remove_dead_nodes(new_nodes, graph)
    graph.ClearField("node")
    graph.node.extend(new_nodes)  # one copy of the new Scan nodes (their bodies hold the recurrent weights)
    _remove_unused_initializers(graph)
    return out


# --------------------------------------------------------------------------------------------------------------
# helpers


def _default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise ValueError("the model imports no default-domain opset")


class _Context:
    """Constants, used names and opset of the graph being rewritten."""

    def __init__(self, graph: onnx.GraphProto, opset: int):
        self.graph = graph
        self.opset = opset
        self.constants: dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and len(node.output) == 1:
                for attr in node.attribute:
                    if attr.name == "value":
                        self.constants[node.output[0]] = attr.t
        self.names: set[str] = set(self.constants)
        _collect_names(graph, self.names)
        self.unsqueezes: list[tuple[str, str]] = []  # (name of the Unsqueeze we made for Y, name of its Scan)

    def fresh(self, base: str) -> str:
        name = base
        i = 0
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def constant(self, name: str) -> np.ndarray | None:
        tensor = self.constants.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def add_initializer(self, base: str, array: np.ndarray) -> str:
        name = self.fresh(base)
        self.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name


def _collect_names(graph: onnx.GraphProto, names: set[str]) -> None:
    for v in list(graph.input) + list(graph.output) + list(graph.value_info):
        names.add(v.name)
    for t in graph.initializer:
        names.add(t.name)
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        if node.name:
            names.add(node.name)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _collect_names(attr.g, names)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _collect_names(g, names)


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _decode(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _int_list_const(ctx: _Context, name: str) -> list[int] | None:
    value = ctx.constant(name)
    return None if value is None else [int(v) for v in np.asarray(value).reshape(-1)]


# Opset-dependent node builders (axes/splits became inputs in opset 13).


def _unsqueeze(ctx: _Context, x: str, axes: list[int], out: str, name: str) -> list[onnx.NodeProto]:
    if ctx.opset >= 13:
        axes_name = ctx.add_initializer(name + "_axes", np.array(axes, dtype=np.int64))
        return [helper.make_node("Unsqueeze", [x, axes_name], [out], name=name)]
    return [helper.make_node("Unsqueeze", [x], [out], name=name, axes=axes)]


def _squeeze(ctx: _Context, x: str, axes: list[int], out: str, name: str) -> list[onnx.NodeProto]:
    if ctx.opset >= 13:
        axes_name = ctx.add_initializer(name + "_axes", np.array(axes, dtype=np.int64))
        return [helper.make_node("Squeeze", [x, axes_name], [out], name=name)]
    return [helper.make_node("Squeeze", [x], [out], name=name, axes=axes)]


def _split(opset: int, x: str, sizes: list[int], outs: list[str], name: str, axis: int, sizes_name: str):
    """A Split node; for opset >= 13 the caller provides `sizes_name` holding `sizes` as int64."""
    if opset >= 13:
        return helper.make_node("Split", [x, sizes_name], outs, name=name, axis=axis)
    return helper.make_node("Split", [x], outs, name=name, axis=axis, split=sizes)


# --------------------------------------------------------------------------------------------------------------
# the rewrite of one GRU


def _rewrite_gru(node: onnx.NodeProto, index: int, ctx: _Context) -> list[onnx.NodeProto]:
    label = node.name or f"GRU_{index}"
    attrs = {k: _decode(v) for k, v in _attrs(node).items()}
    direction = attrs.get("direction", "forward")
    if direction not in ("forward", "reverse"):
        raise ValueError(f"{label}: direction={direction!r} is not supported (only unidirectional GRUs)")
    activations = attrs.get("activations")
    if activations is not None and list(activations) != _DEFAULT_ACTIVATIONS:
        raise ValueError(f"{label}: activations {activations} are not supported (only the default Sigmoid, Tanh)")
    for key in ("activation_alpha", "activation_beta", "clip"):
        if key in attrs:
            raise ValueError(f"{label}: the {key!r} attribute is not supported")
    if attrs.get("layout", 0) != 0:
        raise ValueError(f"{label}: layout={attrs['layout']} (batch-major) is not supported")
    lbr = int(attrs.get("linear_before_reset", 0))

    inputs = list(node.input) + [""] * (6 - len(node.input))
    x_name, w_name, r_name, b_name, seq_name, h0_name = inputs[:6]
    if seq_name:
        raise ValueError(f"{label}: a sequence_lens input is not supported")
    w, r = ctx.constant(w_name), ctx.constant(r_name)
    b = ctx.constant(b_name) if b_name else None
    if w is None or r is None or (b_name and b is None):
        raise ValueError(f"{label}: W, R and B must be constants (initializers or Constant nodes)")
    if w.ndim != 3 or w.shape[0] != 1 or r.ndim != 3 or r.shape[0] != 1:
        raise ValueError(f"{label}: expected W (1, 3H, I) and R (1, 3H, H), got {w.shape} and {r.shape}")
    hidden = r.shape[2]
    if "hidden_size" in attrs and int(attrs["hidden_size"]) != hidden:
        raise ValueError(f"{label}: hidden_size={attrs['hidden_size']} but R has shape {r.shape}")
    if w.shape[1] != 3 * hidden or r.shape[1] != 3 * hidden:
        raise ValueError(f"{label}: W {w.shape} / R {r.shape} do not match hidden size {hidden}")
    if w.dtype != np.float32:
        raise ValueError(f"{label}: only float32 GRUs are supported, W is {w.dtype}")
    b = np.zeros((1, 6 * hidden), np.float32) if b is None else b.astype(np.float32)
    if b.shape != (1, 6 * hidden):
        raise ValueError(f"{label}: expected B (1, {6 * hidden}), got {b.shape}")

    H = hidden
    w, r, b = w[0], r[0], b[0]
    wb, rb = b[: 3 * H], b[3 * H :]
    # Gate order of ONNX W/R/B is z, r, h. Biases that are simply added fold into the input projection;
    # with linear_before_reset=1 the recurrent bias of the h gate sits inside r * (...) and stays in the body.
    x_bias = wb.copy()
    if lbr:
        x_bias[: 2 * H] += rb[: 2 * H]
    else:
        x_bias += rb
    body_bias = rb[2 * H :] if lbr else None

    p = ctx.fresh(label + "_scan")  # prefix for every new name
    nodes: list[onnx.NodeProto] = []

    # Input projection for all frames at once: (T, B, I) @ (I, 3H) + bias, split into z|r and h parts.
    wt = ctx.add_initializer(p + "_W_T", w.T.astype(np.float32))
    bx = ctx.add_initializer(p + "_Wb", x_bias.astype(np.float32))
    proj, proj_b = ctx.fresh(p + "_xw"), ctx.fresh(p + "_xwb")
    x_zr, x_h = ctx.fresh(p + "_x_zr"), ctx.fresh(p + "_x_h")
    nodes.append(helper.make_node("MatMul", [x_name, wt], [proj], name=ctx.fresh(p + "_InputMatMul")))
    nodes.append(helper.make_node("Add", [proj, bx], [proj_b], name=ctx.fresh(p + "_InputAdd")))
    sizes = ctx.add_initializer(p + "_split_zr_h", np.array([2 * H, H], np.int64)) if ctx.opset >= 13 else ""
    nodes.append(_split(ctx.opset, proj_b, [2 * H, H], [x_zr, x_h], ctx.fresh(p + "_InputSplit"), 2, sizes))

    # Initial state (B, H).
    h0 = ctx.fresh(p + "_h0")
    if h0_name:
        nodes += _squeeze(ctx, h0_name, [0], h0, ctx.fresh(p + "_h0_Squeeze"))
    else:
        shape, batch, dims = ctx.fresh(p + "_x_shape"), ctx.fresh(p + "_batch"), ctx.fresh(p + "_h0_shape")
        nodes.append(helper.make_node("Shape", [x_name], [shape], name=ctx.fresh(p + "_Shape")))
        starts = ctx.add_initializer(p + "_one", np.array([1], np.int64))
        ends = ctx.add_initializer(p + "_two", np.array([2], np.int64))
        nodes.append(helper.make_node("Slice", [shape, starts, ends], [batch], name=ctx.fresh(p + "_Slice")))
        hid = ctx.add_initializer(p + "_hidden", np.array([H], np.int64))
        nodes.append(helper.make_node("Concat", [batch, hid], [dims], name=ctx.fresh(p + "_Concat"), axis=0))
        nodes.append(
            helper.make_node(
                "ConstantOfShape", [dims], [h0], name=ctx.fresh(p + "_ConstantOfShape"),
                value=numpy_helper.from_array(np.zeros(1, np.float32)),
            )
        )

    h_last, y_scan = ctx.fresh(p + "_h_last"), ctx.fresh(p + "_y")
    reverse = 1 if direction == "reverse" else 0
    scan = helper.make_node(
        "Scan",
        [h0, x_zr, x_h],
        [h_last, y_scan],
        name=p,
        num_scan_inputs=2,
        scan_input_directions=[reverse, reverse],
        scan_output_directions=[reverse],
    )
    # Build the body in place (it holds the recurrent weights: avoid copying them around).
    attr = scan.attribute.add()
    attr.name, attr.type = "body", onnx.AttributeProto.GRAPH
    _fill_gru_body(attr.g, lambda base: ctx.fresh(f"{p}/{base}"), p + "_body", r, body_bias, H, lbr, ctx.opset)
    nodes.append(scan)

    outputs = list(node.output) + [""] * (2 - len(node.output))
    if outputs[0]:  # Y: (T, 1, B, H)
        unsq = _unsqueeze(ctx, y_scan, [1], outputs[0], ctx.fresh(p + "_Y_Unsqueeze"))
        nodes += unsq
        ctx.unsqueezes.append((unsq[-1].name, scan.name))
    if outputs[1]:  # Y_h: (1, B, H)
        nodes += _unsqueeze(ctx, h_last, [0], outputs[1], ctx.fresh(p + "_Yh_Unsqueeze"))
    return nodes


def _fill_gru_body(body: onnx.GraphProto, fresh, graph_name: str, r: np.ndarray, body_bias, H: int, lbr: int,
                   opset: int) -> None:
    """The Scan body: state h (B, H); scan inputs x_zr (B, 2H), x_h (B, H) with biases already added.

    Outputs h_next and y (the same values: Scan needs a separate name for the per-step output, and ORT gives
    wrong results when one value is listed as two body outputs, hence the Identity).
    """
    f32 = TensorProto.FLOAT
    v = {k: fresh(k) for k in ("h", "x_zr", "x_h", "g", "g_b", "g_zr", "g_h", "a_zr", "zr", "z", "r", "rg_h", "rh",
                              "a_h", "n", "h_minus_n", "z_h_minus_n", "h_next", "y")}
    nodes = []

    def node(op, inputs, outputs, name, **attrs):
        nodes.append(helper.make_node(op, [v.get(i, i) for i in inputs], [v[o] for o in outputs], name=fresh(name),
                                      **attrs))

    def init(base, array):
        name = fresh(base)
        body.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def split(x, sizes, outs, name):
        if opset >= 13:
            node("Split", [x, init(name + "_sizes", np.array(sizes, np.int64))], outs, name, axis=1)
        else:
            node("Split", [x], outs, name, axis=1, split=sizes)

    if lbr:
        # One recurrent MatMul for the three gates: g = h @ [Rz; Rr; Rh]^T (+ [0, 0, Rbh]).
        node("MatMul", ["h", init("R_T", r.T.astype(np.float32))], ["g"], "RecMatMul")
        g = "g"
        if body_bias is not None and np.any(body_bias):  # ORT fuses this Add into the (quantized) MatMul
            full = np.concatenate([np.zeros(2 * H, np.float32), body_bias.astype(np.float32)])
            node("Add", ["g", init("R_b", full)], ["g_b"], "RecAdd")
            g = "g_b"
        split(g, [2 * H, H], ["g_zr", "g_h"], "RecSplit")
        node("Add", ["x_zr", "g_zr"], ["a_zr"], "AddZR")
        node("Sigmoid", ["a_zr"], ["zr"], "SigmoidZR")
        split("zr", [H, H], ["z", "r"], "SplitZR")
        node("Mul", ["r", "g_h"], ["rg_h"], "MulR")
        node("Add", ["x_h", "rg_h"], ["a_h"], "AddH")
    else:
        # linear_before_reset=0: the reset gate scales h before its MatMul, so the h gate needs its own.
        node("MatMul", ["h", init("R_zr_T", r[: 2 * H].T.astype(np.float32))], ["g_zr"], "RecMatMulZR")
        node("Add", ["x_zr", "g_zr"], ["a_zr"], "AddZR")
        node("Sigmoid", ["a_zr"], ["zr"], "SigmoidZR")
        split("zr", [H, H], ["z", "r"], "SplitZR")
        node("Mul", ["r", "h"], ["rh"], "MulR")
        node("MatMul", ["rh", init("R_h_T", r[2 * H :].T.astype(np.float32))], ["g_h"], "RecMatMulH")
        node("Add", ["x_h", "g_h"], ["a_h"], "AddH")
    node("Tanh", ["a_h"], ["n"], "TanhH")
    # h' = (1 - z) * n + z * h = n + z * (h - n)
    node("Sub", ["h", "n"], ["h_minus_n"], "SubHN")
    node("Mul", ["z", "h_minus_n"], ["z_h_minus_n"], "MulZ")
    node("Add", ["n", "z_h_minus_n"], ["h_next"], "AddState")
    node("Identity", ["h_next"], ["y"], "Output")

    body.name = graph_name
    body.node.extend(nodes)
    body.input.extend([
        helper.make_tensor_value_info(v["h"], f32, [None, H]),
        helper.make_tensor_value_info(v["x_zr"], f32, [None, 2 * H]),
        helper.make_tensor_value_info(v["x_h"], f32, [None, H]),
    ])
    body.output.extend([
        helper.make_tensor_value_info(v["h_next"], f32, [None, H]),
        helper.make_tensor_value_info(v["y"], f32, [None, H]),
    ])


# --------------------------------------------------------------------------------------------------------------
# clean-up passes


def _fold_unsqueeze_squeeze(nodes: list, graph: onnx.GraphProto, ctx: _Context) -> list:
    """Where the only consumer of a GRU's Y is a Squeeze of axis 1, let the Scan write that tensor directly."""
    graph_outputs = {o.name for o in graph.output}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    subgraph_refs = _subgraph_references(nodes)
    index_of = {n.name: i for i, n in enumerate(nodes) if n.name}  # our Unsqueeze/Scan names are unique
    remove: set[int] = set()
    for unsq_name, scan_name in ctx.unsqueezes:
        u, s = index_of[unsq_name], index_of[scan_name]
        y = nodes[u].output[0]
        users = consumers.get(y, [])
        if y in graph_outputs or y in subgraph_refs or len(users) != 1:
            continue
        sq = nodes[users[0]]
        if sq.op_type != "Squeeze" or sq.domain not in ("", "ai.onnx") or sq.input[0] != y:
            continue
        if ctx.opset >= 13:
            axes = _int_list_const(ctx, sq.input[1]) if len(sq.input) > 1 and sq.input[1] else None
        else:
            axes = next((list(a.ints) for a in sq.attribute if a.name == "axes"), None)
        if axes not in ([1], [-3]):
            continue
        nodes[s].output[1] = sq.output[0]
        remove.update((u, users[0]))
    return [n for i, n in enumerate(nodes) if i not in remove]


def _subgraph_references(nodes) -> set[str]:
    """Every name used as a node input inside the subgraphs of `nodes` (outer-scope references included)."""
    refs: set[str] = set()

    def walk(g: onnx.GraphProto) -> None:
        for node in g.node:
            refs.update(node.input)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for sub in attr.graphs:
                        walk(sub)

    for node in nodes:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                walk(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    walk(sub)
    return refs


def _remove_dead_nodes(nodes: list, graph: onnx.GraphProto) -> list:
    """Drop nodes whose outputs nobody uses (e.g. the constant axes of a removed Squeeze)."""
    needed = {o.name for o in graph.output} | _subgraph_references(nodes)
    kept = []
    for node in reversed(nodes):
        if any(o and o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    kept.reverse()
    return kept


def _remove_unused_initializers(graph: onnx.GraphProto) -> None:
    """Delete (in place: they may be large) initializers nothing reads any more, e.g. the GRUs' W/R/B."""
    needed = {o.name for o in graph.output} | _subgraph_references(graph.node)
    for node in graph.node:
        needed.update(node.input)
    for i in reversed(range(len(graph.initializer))):
        if graph.initializer[i].name not in needed:
            del graph.initializer[i]
    produced = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    produced |= {t.name for t in graph.initializer}
    for i in reversed(range(len(graph.value_info))):
        if graph.value_info[i].name not in produced:
            del graph.value_info[i]
