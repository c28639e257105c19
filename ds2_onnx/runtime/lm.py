"""Word n-gram language models in ARPA format: read one (ours or KenLM's), score words, and build one from text.

`build_arpa` estimates an interpolated Kneser-Ney model (one discount per order, D = n1 / (n1 + 2 n2)) and
writes it as a backoff ARPA file, so any ARPA tool can read it and any ARPA file (e.g. from KenLM's lmplz)
can be used here. Pure Python: the runtime stays free of native LM libraries.
"""

from __future__ import annotations

import gzip
import io
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import LanguageModelError
from ..files import atomic_path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
LN10 = math.log(10.0)
MISSING_UNK_LOG10 = -100.0  # what KenLM assumes when an ARPA file has no <unk>
ALPHABET = "'ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # the MLPerf labels' letters (blank and space aside)


def _open_text(path: Path, mode: str):
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, mode + "b"), encoding="utf-8")
    return open(path, mode, encoding="utf-8")


@dataclass(frozen=True, eq=False)
class LanguageModel:
    """A backoff n-gram model. Keys are the n-gram's words joined by single spaces; values (log10 p, log10 bow)."""

    order: int
    tables: tuple[dict[str, tuple[float, float]], ...]  # tables[n - 1] holds the n-grams
    source: str = "language model"

    @classmethod
    def load(cls, path: str | Path) -> "LanguageModel":
        """Read an ARPA file (`.arpa`, or gzip-compressed `.arpa.gz`)."""
        path = Path(path)
        if path.is_dir():
            raise LanguageModelError(f"{path}: a folder, not a language model file")
        if not path.is_file():
            raise LanguageModelError(f"{path}: no such language model file")
        try:
            with _open_text(path, "r") as f:
                return cls._parse(f, str(path))
        except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
            raise LanguageModelError(f"{path}: cannot read the language model ({e})") from e

    @classmethod
    def _parse(cls, lines: Iterable[str], source: str) -> "LanguageModel":
        it = iter(lines)
        lineno = 0

        def bad(message: str) -> LanguageModelError:
            return LanguageModelError(f"{source}: not an ARPA language model (line {lineno}: {message})")

        for lineno, line in enumerate(it, 1):
            if line.strip() == "\\data\\":
                break
            if lineno > 1000:
                raise bad("no \\data\\ header")
        else:
            raise bad("no \\data\\ header")
        counts: dict[int, int] = {}
        for line in it:
            lineno += 1
            line = line.strip()
            if not line:
                if counts:
                    break
                continue
            if not line.startswith("ngram ") or "=" not in line:
                raise bad(f"expected 'ngram N=count', got {line[:60]!r}")
            n, _, count = line[6:].partition("=")
            try:
                counts[int(n)] = int(count)
            except ValueError:
                raise bad(f"expected 'ngram N=count', got {line[:60]!r}") from None
        order = max(counts, default=0)
        if order < 1 or sorted(counts) != list(range(1, order + 1)):
            raise bad(f"n-gram orders {sorted(counts)} are not 1..N")
        tables: list[dict[str, tuple[float, float]]] = []
        for n in range(1, order + 1):
            header = f"\\{n}-grams:"
            for line in it:
                lineno += 1
                if line.strip():
                    if line.strip() != header:
                        raise bad(f"expected {header!r}, got {line.strip()[:60]!r}")
                    break
            table: dict[str, tuple[float, float]] = {}
            for _ in range(counts[n]):
                line = next(it, None)
                lineno += 1
                if line is None:
                    raise bad(f"file ends inside the {n}-grams")
                parts = line.split()
                if len(parts) not in (n + 1, n + 2):
                    raise bad(f"expected log10 p, {n} word(s) and an optional backoff, got {line.strip()[:60]!r}")
                try:
                    logp = float(parts[0])
                    bow = float(parts[n + 1]) if len(parts) == n + 2 else 0.0
                except ValueError:
                    raise bad(f"not a number in {line.strip()[:60]!r}") from None
                if not (logp <= 0.0 and math.isfinite(bow)) or math.isnan(logp):
                    raise bad(f"log10 probability must be <= 0 and the backoff finite: {line.strip()[:60]!r}")
                table[" ".join(parts[1 : n + 1])] = (logp, bow)
            tables.append(table)
        for line in it:
            lineno += 1
            if line.strip():
                if line.strip() != "\\end\\":
                    raise bad(f"expected \\end\\ after the {order}-grams, got {line.strip()[:60]!r}")
                break
        else:
            raise bad("no \\end\\ (truncated file?)")
        if not tables[0]:
            raise bad("no unigrams")
        return cls(order, tuple(tables), source)

    # -- scoring ------------------------------------------------------------------------------------
    @property
    def vocabulary(self) -> frozenset[str]:
        return frozenset(w for w in self.tables[0] if w not in (BOS, EOS, UNK))

    def __contains__(self, word: str) -> bool:
        return word in self.tables[0]

    @property
    def unk_log10(self) -> float:
        entry = self.tables[0].get(UNK)
        return entry[0] if entry else MISSING_UNK_LOG10

    def log10_prob(self, context: Sequence[str], word: str) -> float:
        """log10 p(word | context), backing off as ARPA defines; only the last order-1 context words count."""
        context = tuple(context[len(context) - (self.order - 1) :]) if self.order > 1 else ()
        tables = self.tables
        backoff = 0.0
        for k in range(len(context), -1, -1):
            ctx = context[len(context) - k :]
            entry = tables[k].get(" ".join(ctx + (word,)))
            if entry is not None:
                return entry[0] + backoff
            if k:
                ctx_entry = tables[k - 1].get(" ".join(ctx))
                if ctx_entry is not None:
                    backoff += ctx_entry[1]
        return self.unk_log10 + backoff

    def sentence_log10(self, words: Sequence[str], bos: bool = True, eos: bool = True) -> float:
        context = [BOS] if bos else []
        total = 0.0
        for w in list(words) + ([EOS] if eos else []):
            total += self.log10_prob(context, w)
            context.append(w)
        return total

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> float:
        total, n = 0.0, 0
        for words in sentences:
            total += self.sentence_log10(words)
            n += len(words) + 1
        if n == 0:
            raise LanguageModelError("no words to compute a perplexity on")
        return 10.0 ** (-total / n)


# -- estimation -------------------------------------------------------------------------------------------
def _discount(count_of_counts: Counter) -> float:
    n1, n2 = count_of_counts.get(1, 0), count_of_counts.get(2, 0)
    if n1 == 0 or n2 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2.0 * n2), 0.05), 0.95)


def estimate(sentences: Iterable[Sequence[str]], order: int = 3, prune: Sequence[int] = ()) -> LanguageModel:
    """Interpolated Kneser-Ney estimate from tokenised sentences, as a backoff model.

    Lower orders use continuation counts (distinct left neighbours), except n-grams starting with <s>, which
    have no left neighbour and keep their raw counts. `prune` holds count thresholds by order, as in KenLM's
    `--prune`: (0, 1) drops bigrams and longer n-grams counted once, (0, 0, 1) only trigrams; the last value
    applies to the orders after it, unigrams are never dropped, and neither is an n-gram that a kept longer one
    needs as its context or suffix. The backoff weights are then renormalised so every context's distribution
    still sums to one.
    """
    if order < 1:
        raise LanguageModelError(f"order must be at least 1, got {order}")
    thresholds = prune_thresholds(prune, order)
    raw: list[Counter] = [Counter() for _ in range(order)]
    n_sentences = 0
    for words in sentences:
        words = [w for w in words if w]
        if not words:
            continue
        if any(w in (BOS, EOS, UNK) for w in words):
            raise LanguageModelError(f"sentence uses a reserved token ({BOS}, {EOS}, {UNK}): {' '.join(words)[:80]!r}")
        n_sentences += 1
        padded = (BOS, *words, EOS)
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                raw[n - 1][padded[i : i + n]] += 1
    if n_sentences == 0:
        raise LanguageModelError("no sentences to build a language model from")
    del raw[0][(BOS,)]

    # counts used at each order: raw for the top order and for n-grams that start with <s>, else continuation
    counts: list[dict[tuple[str, ...], int]] = [dict() for _ in range(order)]
    counts[order - 1] = dict(raw[order - 1])
    for n in range(order - 1, 0, -1):
        cont: Counter = Counter()
        for gram in raw[n]:  # (n + 1)-grams: each is one distinct left neighbour of its n-word suffix
            cont[gram[1:]] += 1
        level = counts[n - 1]
        for gram, c in raw[n - 1].items():
            level[gram] = c if gram[0] == BOS else cont[gram]
    discounts = [_discount(Counter(level.values())) for level in counts]

    probs: list[dict[tuple[str, ...], float]] = [dict() for _ in range(order)]
    # unigrams, interpolated with the uniform distribution over the vocabulary (+ </s> and <unk>)
    uni = counts[0]
    vocab_size = len(uni) + 1  # + <unk>
    total = sum(uni.values())
    d = discounts[0]
    gamma = d * len(uni) / total
    for gram, c in uni.items():
        probs[0][gram] = max(c - d, 0.0) / total + gamma / vocab_size
    probs[0][(UNK,)] = gamma / vocab_size
    for n in range(2, order + 1):
        by_context: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
        for gram, c in counts[n - 1].items():
            by_context[gram[:-1]].append((gram[-1], c))
        d = discounts[n - 1]
        lower = probs[n - 2]
        level = probs[n - 1]
        for ctx, successors in by_context.items():
            total = sum(c for _, c in successors)
            gamma = d * len(successors) / total
            for w, c in successors:
                level[ctx + (w,)] = max(c - d, 0.0) / total + gamma * lower[ctx[1:] + (w,)]

    # pruning: from the top order down, drop n-grams counted no more than their order's threshold unless a kept
    # longer n-gram needs them as its context (ARPA stores backoff weights on context n-grams) or as its suffix (its
    # lower-order probability enters the backoff weight below).
    kept = [probs[0]]
    needed: set[tuple[str, ...]] = set()
    for n in range(order, 1, -1):
        limit = thresholds[n - 1]
        level = {g: p for g, p in probs[n - 1].items() if counts[n - 1][g] > limit or g in needed}
        needed = {g[:-1] for g in level} | {g[1:] for g in level}
        kept.insert(1, level)
    # backoff weights: the mass a context leaves to its lower order, renormalised over unseen successors. The
    # lower-order probability of every kept n-gram's suffix is an explicit entry of `kept` (see above).
    bows: list[dict[tuple[str, ...], float]] = [dict() for _ in range(order)]
    for n in range(2, order + 1):
        seen_mass: dict[tuple[str, ...], float] = defaultdict(float)
        lower_mass: dict[tuple[str, ...], float] = defaultdict(float)
        for gram, p in kept[n - 1].items():
            seen_mass[gram[:-1]] += p
            lower_mass[gram[:-1]] += kept[n - 2][gram[1:]]
        for ctx in seen_mass:
            left = max(1.0 - seen_mass[ctx], 1e-12)
            left_lower = max(1.0 - lower_mass[ctx], 1e-12)
            bows[n - 2][ctx] = left / left_lower
    tables = []
    for n in range(order):
        table = {}
        for gram, p in kept[n].items():
            bow = bows[n].get(gram)
            table[" ".join(gram)] = (math.log10(p), math.log10(bow) if bow else 0.0)
        if n == 0:
            table[BOS] = (-99.0, math.log10(bows[0][(BOS,)]) if (BOS,) in bows[0] else 0.0)
        tables.append(table)
    return LanguageModel(order, tuple(tables), f"{order}-gram estimate")


def prune_thresholds(prune: Sequence[int], order: int) -> list[int]:
    """Per-order count thresholds from `prune` (see `estimate`), checked: non-negative, non-decreasing, and 0 for
    unigrams."""
    values = [int(v) for v in prune] or [0]
    if values[0] != 0 or any(v < 0 for v in values) or any(b < a for a, b in zip(values, values[1:])):
        raise LanguageModelError(f"pruning thresholds must start at 0 (unigrams are kept) and never decrease, got "
                                 f"{','.join(map(str, values))}")
    if len(values) > order:
        raise LanguageModelError(f"{len(values)} pruning thresholds for a {order}-gram model")
    return values + [values[-1]] * (order - len(values))


def write_arpa(model: LanguageModel, path: str | Path) -> Path:
    """Write `model` as ARPA text (gzip-compressed if the name ends in .gz), atomically: a half-written file
    is never left at `path`. N-grams are sorted so the same model always gives the same bytes."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if path.name.endswith(".gz") else raw
        with stream, io.TextIOWrapper(stream, encoding="utf-8", newline="\n") as f:
            f.write("\\data\\\n")
            for n, table in enumerate(model.tables, 1):
                f.write(f"ngram {n}={len(table)}\n")
            for n, table in enumerate(model.tables, 1):
                f.write(f"\n\\{n}-grams:\n")
                for key in sorted(table):
                    logp, bow = table[key]
                    if n < model.order and bow != 0.0:
                        f.write(f"{logp:.6f}\t{key}\t{bow:.6f}\n")
                    else:
                        f.write(f"{logp:.6f}\t{key}\n")
            f.write("\n\\end\\\n")
    return path


def text_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files named, with each folder replaced by the LibriSpeech transcripts (`*.trans.txt`) under it."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("*.trans.txt"))
            if not found:
                raise LanguageModelError(f"{p}: a folder without LibriSpeech transcripts (*.trans.txt)")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise LanguageModelError(f"{p}: no such text file or folder")
    return files


def read_sentences(paths: Sequence[str | Path], alphabet: str | None = ALPHABET) -> list[list[str]]:
    """Sentences from text files (one per line, upper-cased) and folders of LibriSpeech transcripts, whose
    lines' leading utterance ids are dropped. Characters outside `alphabet` are dropped from words."""
    sentences = []
    for p in text_files(paths):
        try:
            with _open_text(p, "r") as f:
                for line in f:
                    words = line.upper().split()
                    if p.name.endswith(".trans.txt") and words:
                        words = words[1:]
                    if alphabet is not None:
                        words = ["".join(ch for ch in w if ch in alphabet) for w in words]
                    words = [w for w in words if w]
                    if words:
                        sentences.append(words)
        except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
            raise LanguageModelError(f"{p}: cannot read text ({e})") from e
    return sentences
