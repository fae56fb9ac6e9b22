"""The jailbreak family: jailbreak / prompt-injection wrappers and plain harmful requests.

A 4-class softmax (benign / jailbreak / injection / harmful) over a dense prompt embedding plus
hashed word 1-2-gram and char 3-5-gram blocks, shipped as numpy arrays in `models/jailbreak/`
(trained by scripts/train_jailbreak.py; see PROVENANCE.md there). Two tiers:
- `classifier.npz` (default, "fast"): the builtin static embedding; no extra dependency.
- `accurate.npz` ("accurate", `artifact: accurate`): the int8 MiniLM encoder under onnxruntime
  (routeyard.signals.encoder_onnx; the `jailbreak-accurate` extra).
A classifier's `meta["encoder"]` names the embedding it was trained on. Rule `patterns` force
`jailbreak` at confidence 1.0. Names: `jailbreak`, `harmful`.
"""

from __future__ import annotations

import itertools
import re
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from routeyard.config.signals import JAILBREAK_NAMES, JailbreakFamily
from routeyard.signals.base import (
    Family,
    FamilyBuild,
    FamilyResult,
    Match,
    RequestContext,
    register,
)
from routeyard.signals.embedder import Embedder

MODEL_DIR = Path(__file__).parent / "models" / "jailbreak"
BUILTIN_ARTIFACT = MODEL_DIR / "classifier.npz"
ACCURATE_ARTIFACT = MODEL_DIR / "accurate.npz"
# `artifact:` names of the shipped tiers (anything else is a path to an .npz)
TIERS = {"fast": BUILTIN_ARTIFACT, "accurate": ACCURATE_ARTIFACT}
BUILTIN_ENCODER, MINILM_ENCODER = "builtin", "minilm-l6-int8"
# Used when the config gives no `patterns`; `patterns: []` turns them off.
DEFAULT_PATTERNS = (
    # Instruction overrides: a verb that drops instructions plus what came before them.
    r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+|any\s+|the\s+|your\s+|of\s+)*"
    r"(?:previous|prior|above|earlier|preceding|former|original|initial|system)\s+"
    r"(?:instructions?|prompts?|rules|directions|directives|guidelines|commands)",
    r"\b(?:ignore|disregard|forget)\s+(?:everything|all|anything)\s+(?:above|before|prior|"
    r"previously|(?:that\s+)?you\s+(?:were|have been)\s+told)",
    r"\bdisregard\s+(?:all\s+|any\s+)?(?:previous|prior|above|your)\s+(?:instructions|rules)",
    # Prompt extraction: asks for the model's own hidden instructions.
    r"\b(?:reveal|print|show|repeat|output|display|leak|dump)\s+(?:me\s+)?(?:your|the)\s+"
    r"(?:(?:full|entire|original|initial|hidden|secret|exact)\s+)*"
    r"(?:system\s+prompt|pre-?prompt|initial\s+prompt)",
    r"\b(?:reveal|print|repeat|output|leak|dump)\s+(?:me\s+)?your\s+"
    r"(?:(?:full|entire|original|initial|hidden|secret|exact)\s+)*instructions",
    # Fake chat-template turns that open a system message inside user text.
    r"<\|im_start\|>\s*system|<</?SYS>>",
    r"\bnew\s+(?:system\s+)?instructions\s*:",
    r"(?-i:\bDAN\b)",  # "Do Anything Now", upper case only (Dan is a name)
    r"\bdo anything now\b",
    r"\bdeveloper mode\b",
    r"\bjailbr(?:eak|oken)\b",
)
MAX_CHARS = 20_000  # word n-grams read this much of a prompt
CHAR_HEAD, CHAR_TAIL = 4_000, 2_000  # char n-grams read the head and tail (injections trail)
CHAR_NGRAMS = (3, 4, 5)
_TOKEN = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
_MIX = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio multiplier: spreads the rolling hash


def hashed_features(text: str, buckets: int, power: float = 0.5
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values (n ** -power each; 0.5: unit length) of the word 1-2-grams in text."""
    words = _TOKEN.findall(text[:MAX_CHARS].lower())
    grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    if not grams:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    index = np.unique(np.fromiter((zlib.crc32(g.encode()) for g in grams), dtype=np.int64,
                                  count=len(grams)) % buckets)
    values = np.full(len(index), len(index) ** -power, dtype=np.float32)
    return index, values


def char_features(text: str, buckets: int, power: float = 0.5
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values (n ** -power each) of the character 3-5-grams present in text.

    Vectorised rolling hash over code points: char grams survive leetspeak, odd spacing and
    padding that split words, and cost ~0.1 ms even for long prompts."""
    if len(text) > CHAR_HEAD + CHAR_TAIL:
        text = text[:CHAR_HEAD] + " " + text[-CHAR_TAIL:]
    text = _SPACE.sub(" ", text.lower())
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    parts = []
    with np.errstate(over="ignore"):  # uint64 wrap-around is the hash's modulus
        for n in CHAR_NGRAMS:
            if len(codes) < n:
                continue
            width = len(codes) - n + 1
            h = np.full(width, np.uint64(n))
            for k in range(n):
                h = h * np.uint64(1_000_003) + codes[k:k + width]
            parts.append(((h * _MIX) >> np.uint64(32)) % np.uint64(buckets))
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    index = np.unique(np.concatenate(parts)).astype(np.int64)
    values = np.full(len(index), len(index) ** -power, dtype=np.float32)
    return index, values


def sparse_features(text: str, word_buckets: int, char_buckets: int, power: float = 0.5
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The hashed block: word grams in [0, word_buckets), char grams after them (if any)."""
    if word_buckets:
        index, values = hashed_features(text, word_buckets, power)
    else:
        index, values = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if char_buckets:
        char_index, char_values = char_features(text, char_buckets, power)
        index = np.concatenate([index, char_index + word_buckets])
        values = np.concatenate([values, char_values])
    return index, values


def jailbreak_score(probs: dict[str, float]) -> float:
    """The `jailbreak` name's score: wrapper templates and prompt injections are separate
    classes in newer models (their phrasing differs), one name to the router."""
    return probs.get("jailbreak", 0.0) + probs.get("injection", 0.0)


class JailbreakClassifier:
    """Softmax over [embedding | hashed word n-grams | hashed char n-grams]; stored as plain
    arrays (no pickle). `meta["char_buckets"]` sizes the char block (absent in older files)."""

    def __init__(self, labels: list[str], dense: np.ndarray, hashed: np.ndarray,
                 bias: np.ndarray, meta: dict[str, Any]) -> None:
        self.labels = labels
        self.dense = np.ascontiguousarray(dense, dtype=np.float32)
        # Stored bucket-major so one prompt's buckets are a contiguous gather.
        self.hashed_t = np.ascontiguousarray(hashed.T, dtype=np.float32)
        self.bias = bias.astype(np.float32)
        self.meta = meta
        self.char_buckets = int(meta.get("char_buckets", 0))
        self.buckets = int(hashed.shape[1]) - self.char_buckets
        # Older files: unit-length blocks (0.5); higher powers damp long prompts' n-gram mass.
        self.norm_power = float(meta.get("norm_power", 0.5))
        self.encoder = str(meta.get("encoder", BUILTIN_ENCODER))

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.5))

    @property
    def harmful_threshold(self) -> float:
        return float(self.meta.get("harmful_threshold", 0.5))

    def logits(self, embedding: np.ndarray, text: str) -> np.ndarray:
        index, values = sparse_features(text, self.buckets, self.char_buckets,
                                        self.norm_power)
        out = self.dense @ embedding + self.bias if self.dense.shape[1] else self.bias.copy()
        if len(index):
            out = out + values @ self.hashed_t[index]
        return out

    def probabilities(self, embedding: np.ndarray, text: str) -> dict[str, float]:
        logits = self.logits(embedding, text)
        exp = np.exp(logits - logits.max())
        probs = exp / exp.sum()
        return {label: float(p) for label, p in zip(self.labels, probs, strict=True)}

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, labels=np.array(self.labels), dense=self.dense,
                            hashed=self.hashed_t.T.astype(np.float16), bias=self.bias,
                            meta=np.array(orjson.dumps(self.meta).decode()))

    @classmethod
    def load(cls, path: str | Path) -> JailbreakClassifier:
        with np.load(path, allow_pickle=False) as data:
            return cls([str(x) for x in data["labels"]], data["dense"], data["hashed"],
                       data["bias"], orjson.loads(str(data["meta"])))


def load_builtin(tier: str = "fast") -> JailbreakClassifier:
    """A shipped tier's classifier, loaded once per process."""
    return _load_shipped(TIERS[tier])


@cache
def _load_shipped(path: Path) -> JailbreakClassifier:
    return JailbreakClassifier.load(path)


def encoder_for(classifier: JailbreakClassifier) -> Embedder:
    """The embedder a classifier was trained on (the builtin one, or the int8 MiniLM)."""
    if classifier.encoder == MINILM_ENCODER:
        from routeyard.signals.encoder_onnx import load_encoder

        return load_encoder()
    if classifier.encoder != BUILTIN_ENCODER:
        raise RuntimeError(f"jailbreak classifier needs unknown encoder {classifier.encoder!r}")
    from routeyard.signals.embedder import load_embedder

    return load_embedder("builtin")


_ODD_SPACE = re.compile(r"[\x0b\x1c-\x1f]")  # whitespace to Python's \s on ASCII, not RE2's


def _re2_union(patterns: list[str] | tuple[str, ...]) -> Any:
    """One case-insensitive RE2 regex for all patterns, or None (no patterns, or one RE2
    cannot compile, such as a lookaround)."""
    if not patterns:
        return None
    import re2

    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile("(?i)" + "|".join(f"(?:{p})" for p in patterns), options)
    except re2.error:
        return None


class JailbreakDetector:
    """The family's decision on one text: patterns first, then the classifier's thresholds."""

    def __init__(self, classifier: JailbreakClassifier, embedder: Embedder,
                 patterns: list[str] | tuple[str, ...] = DEFAULT_PATTERNS,
                 threshold: float | None = None, harmful_threshold: float | None = None) -> None:
        self.classifier = classifier
        self.embedder = embedder
        self.patterns = [re.compile(p, re.IGNORECASE) for p in patterns]
        self._prefilter = _re2_union(patterns)
        self.threshold = classifier.threshold if threshold is None else threshold
        self.harmful_threshold = (classifier.harmful_threshold if harmful_threshold is None
                                  else harmful_threshold)

    def pattern(self, text: str) -> str | None:
        """The first pattern (in list order) that matches text, if any. On ASCII text one RE2
        pass over the union of the patterns answers "none" (~0.005 ms instead of ~0.4 ms for
        2,000 characters); Python's re decides everything else (RE2's \\s and \\b are ASCII)."""
        if (self._prefilter is not None and text.isascii() and not _ODD_SPACE.search(text)
                and not self._prefilter.search(text)):
            return None
        for pattern in self.patterns:
            if pattern.search(text):
                return pattern.pattern
        return None

    @property
    def uses_shared_embedding(self) -> bool:
        """True when the classifier reads the request's builtin static embedding."""
        return self.classifier.encoder == BUILTIN_ENCODER

    def embed(self, text: str) -> np.ndarray:
        if not self.classifier.dense.shape[1]:
            return np.zeros(0, dtype=np.float32)
        return self.embedder.embed_one(text)

    def detect(self, text: str, embedding: np.ndarray | None = None) -> FamilyResult:
        """`embedding`: the builtin static one, if already computed (ignored by classifiers
        trained on another encoder)."""
        result = FamilyResult()
        hit = self.pattern(text)
        if hit is not None:
            result.values["pattern"] = hit
            result.matches["jailbreak"] = Match(1.0, hit)
        if embedding is None or not self.uses_shared_embedding:
            embedding = self.embed(text)
        probs = self.classifier.probabilities(embedding, text)
        result.values.update({label: round(p, 3) for label, p in probs.items()})
        jailbreak, harmful = jailbreak_score(probs), probs.get("harmful", 0.0)
        if hit is None and jailbreak >= self.threshold:
            result.matches["jailbreak"] = Match(jailbreak, round(jailbreak, 3))
        if harmful >= self.harmful_threshold:
            result.matches["harmful"] = Match(harmful, round(harmful, 3))
        return result


def make_detector(classifier: JailbreakClassifier,
                  patterns: list[str] | tuple[str, ...] = DEFAULT_PATTERNS,
                  threshold: float | None = None, harmful_threshold: float | None = None,
                  embedder: Embedder | None = None) -> JailbreakDetector:
    """A detector with the embedder its classifier needs (`embedder`: the builtin one, when
    the caller already holds it)."""
    if embedder is None or classifier.encoder != BUILTIN_ENCODER:
        embedder = encoder_for(classifier)
    return JailbreakDetector(classifier, embedder, patterns, threshold, harmful_threshold)


def build_detector(config: JailbreakFamily, embedder: Embedder,
                   base_dir: Path | None = None) -> JailbreakDetector:
    """`artifact`: unset or `fast` (the default tier), `accurate`, or a path to an .npz."""
    if config.artifact and config.artifact not in TIERS:
        path = Path(config.artifact)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        classifier = JailbreakClassifier.load(path)
    else:
        classifier = load_builtin(config.artifact or "fast")
    patterns = DEFAULT_PATTERNS if config.patterns is None else config.patterns
    return make_detector(classifier, patterns, config.threshold, config.harmful_threshold,
                         embedder)


@register
class JailbreakSignals(Family):
    name = "jailbreak"
    needs_embedder = True

    def __init__(self, config: JailbreakFamily, embedder: Embedder | None = None,
                 detector: JailbreakDetector | None = None) -> None:
        super().__init__(config, embedder)
        if embedder is None:
            raise RuntimeError("the jailbreak family needs an embedding model")
        self.detector = detector or build_detector(config, embedder)

    @classmethod
    def build(cls, config: JailbreakFamily, build: FamilyBuild) -> Family:
        if build.embedder is None:
            raise RuntimeError("the jailbreak family needs an embedding model")
        return cls(config, build.embedder,
                   build_detector(config, build.embedder, build.base_dir))

    def declared_names(self) -> set[str]:
        return set(JAILBREAK_NAMES)

    def evaluate(self, ctx: RequestContext) -> FamilyResult:
        text = ctx.last_user_text
        if self.detector.uses_shared_embedding:
            return self.detector.detect(text, ctx.embedding())
        return self.detector.detect(text)
