"""CTC prefix beam search with an optional word n-gram language model (shallow fusion).

Each hypothesis is scored  log p_ctc(prefix) + alpha * ln p_lm(words) + beta * (number of words)
+ unk_offset * (words outside the LM's vocabulary). A word is scored by the LM when the space after it is
emitted (and the last one at the end, with </s>); while a word is being spelled, a prefix that no vocabulary
word starts with is charged the LM's <unk> score and `unk_offset` at once, so misspellings drop out of the
beam early. `unk_offset=-inf` (the default) allows vocabulary words only, a lexicon-constrained search. With
look-ahead (the default) a word being spelled is ranked, until it ends, as the likeliest vocabulary word it starts
(highest unigram probability), so it competes on equal terms with hypotheses that have paid for their last word;
the final ranking uses the LM's full scores either way. At each frame the beam keeps at most `beam_width`
hypotheses, and none scoring more than `beam_margin` below the best.
Without an LM this is plain CTC prefix beam search. Greedy decoding (`decoding.decode`) stays the default
everywhere: it is what the MLPerf reference measures, so WER parity checks use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .decoding import Decoded, from_path
from .lm import BOS, EOS, LN10, LanguageModel

NEG_INF = -math.inf


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


@dataclass(frozen=True)
class BeamSearchOptions:
    beam_width: int = 64
    # alpha, beta and unk_offset were tuned for the bundled demo LM on the demo corpus's dev split
    # (docs/demo-model.md); tune them again for another model or LM (`ds2-onnx tune-lm`). All three are unused
    # without an LM.
    alpha: float = 0.8  # LM weight (on natural-log probabilities)
    beta: float = 0.0  # bonus per word
    prune_log_prob: float = -10.0  # labels below this log-prob at a frame are not tried as extensions
    # hypotheses scoring more than this (natural log) below the frame's best are dropped even if the beam has room:
    # most of a wide beam's accuracy at much less of its cost (docs/demo-model.md); inf keeps `beam_width` always
    beam_margin: float = 12.0
    # added (natural log, not weighted by alpha) to a word outside the LM's vocabulary, beyond alpha * its
    # <unk> log-prob; -inf: vocabulary words only. Unused without an LM.
    unk_offset: float = -math.inf
    # LM look-ahead: a word being spelled is scored as its likeliest vocabulary completion (the highest unigram
    # probability among the words it starts), so it competes fairly with prefixes whose words the LM has scored
    lookahead: bool = True

    def __post_init__(self):
        if self.beam_width < 1:
            raise ValueError(f"beam width must be at least 1, got {self.beam_width}")
        if not self.beam_margin > 0:  # also NaN
            raise ValueError(f"beam margin must be > 0 (or inf), got {self.beam_margin}")
        if not (math.isfinite(self.alpha) and math.isfinite(self.beta) and self.alpha >= 0):
            raise ValueError(f"alpha must be finite and >= 0 and beta finite, got alpha={self.alpha}, beta={self.beta}")
        if math.isnan(self.unk_offset) or self.unk_offset > 0:
            raise ValueError(f"unk_offset must be <= 0 (or -inf), got {self.unk_offset}")

    def oov_score(self, count: int) -> float:
        """unk_offset for `count` out-of-vocabulary words (0 for none, also with an offset of -inf)."""
        return 0.0 if count == 0 else count * self.unk_offset


@dataclass
class _Prefix:
    """What a prefix (the text so far) carries besides its CTC probabilities; built once per distinct prefix."""

    parent: "_Prefix | None"
    label: int  # last label id (-1 for the empty prefix)
    frame: int  # frame at which this prefix's last label was most probably first emitted, on paths the beam kept
    text: str
    lm_words: float = 0.0  # ln p_lm of the completed words
    context: tuple[str, ...] = (BOS,)
    partial: str = ""  # the word being spelled
    words: int = 0  # completed words
    oov: int = 0  # completed words outside the LM's vocabulary
    emit: float = NEG_INF  # ln p of the likeliest way to reach this prefix by emitting its last label at `frame`
    bonus: float = 0.0  # score - ln p_ctc: alpha * (lm_words + ln <unk> if no vocabulary word starts with `partial`,
    #                     else its look-ahead score)
    #                     + beta * words + unk_offset * oov, a partial word counted (see `_child_bonus`)
    children: dict = field(default_factory=dict)
    tried: dict = field(default_factory=dict)  # label -> `_child_bonus` of an extension not built (yet)


class BeamSearchDecoder:
    """Decode (T, C) log-probs with CTC prefix beam search, optionally fused with a word n-gram LM."""

    def __init__(self, labels: str, blank: int, lm: LanguageModel | None = None,
                 options: BeamSearchOptions = BeamSearchOptions()):
        self.labels = labels
        self.blank = blank
        self.space = labels.find(" ")
        if self.space < 0:
            raise ValueError("the labels have no space, so words cannot be scored")
        self.lm = lm
        self.options = options
        self._word_cache: dict[tuple[tuple[str, ...], str], float] = {}
        if lm is not None:
            # every prefix of a vocabulary word -> ln p_lm of the likeliest word it starts (unigram probabilities),
            # or 0 without look-ahead
            self._prefixes: dict[str, float] = {}
            unigrams = lm.tables[0]
            for word in lm.vocabulary:
                score = unigrams[word][0] * LN10 if options.lookahead else 0.0
                for i in range(1, len(word) + 1):
                    if score > self._prefixes.get(word[:i], NEG_INF):
                        self._prefixes[word[:i]] = score
            self._unk = lm.unk_log10 * LN10

    def __repr__(self) -> str:
        lm = f"{self.lm.order}-gram LM {self.lm.source}" if self.lm else "no LM"
        return f"BeamSearchDecoder({lm}, {self.options})"

    # -- language model ---------------------------------------------------------------------------
    def _word_score(self, context: tuple[str, ...], word: str) -> float:
        key = (context, word)
        score = self._word_cache.get(key)
        if score is None:
            score = self.lm.log10_prob(context, word) * LN10
            if len(self._word_cache) > 200_000:
                self._word_cache.clear()
            self._word_cache[key] = score
        return score

    def _complete(self, context: tuple[str, ...], word: str) -> tuple[float, tuple[str, ...]]:
        """ln p_lm(word | context) and the context that follows it (the last order-1 words)."""
        return self._word_score(context, word), (context + (word,))[-max(1, self.lm.order - 1):]

    def _close_word(self, node: _Prefix) -> tuple[float, tuple[str, ...], int]:
        """`node`'s lm_words, context and oov once its partial word is complete. (`_child_bonus` scores the same
        completion without building the context, on the hot path.)"""
        score, context = self._complete(node.context, node.partial)
        return node.lm_words + score, context, node.oov + (node.partial not in self.lm)

    def _child_bonus(self, node: _Prefix, label: int) -> float:
        """The `bonus` that `_child(node, label)` would get, without building it: most extensions tried at a frame
        fall out of the beam, so only the survivors become nodes."""
        if self.lm is None:
            return 0.0
        o = self.options
        if label == self.space:  # the word is complete: the LM scores it
            lm, oov = node.lm_words + self._word_score(node.context, node.partial), node.oov + (node.partial not in self.lm)
        else:
            ahead = self._prefixes.get(node.partial + self.labels[label])
            if ahead is not None:  # still spelling a vocabulary word
                lm, oov = node.lm_words + ahead, node.oov
            else:  # no vocabulary word starts like this: charged as <unk> at once
                lm, oov = node.lm_words + self._unk, node.oov + 1
        return o.alpha * lm + o.beta * (node.words + 1) + o.oov_score(oov)

    def _child(self, node: _Prefix, label: int, frame: int, bonus: float) -> _Prefix:
        """The prefix `node` extended by `label` (not a space after a space or at the start: those keep `node`);
        `bonus` is `_child_bonus(node, label)`, already computed when the extension was scored."""
        ch = self.labels[label]
        child = _Prefix(node, label, frame, node.text + ch, node.lm_words, node.context, node.partial, node.words,
                        node.oov, bonus=bonus)
        if label == self.space:
            child.words += 1
            child.partial = ""
            if self.lm is not None:
                child.lm_words, child.context, child.oov = self._close_word(node)
        else:
            child.partial = node.partial + ch
        node.children[label] = child
        return child

    def _final_score(self, node: _Prefix, ctc: float) -> float:
        if self.lm is None:
            return ctc
        o = self.options
        lm, context, oov, words = node.lm_words, node.context, node.oov, node.words
        if node.partial:
            lm, context, oov = self._close_word(node)
            words += 1
        lm += self._word_score(context, EOS)
        return ctc + o.alpha * lm + o.beta * words + o.oov_score(oov)

    # -- search -----------------------------------------------------------------------------------
    def decode(self, log_probs: np.ndarray, frame_duration: float) -> Decoded:
        """Best transcript of one utterance's valid (T, C) log-probs."""
        log_probs = np.asarray(log_probs, dtype=np.float64)
        o = self.options
        blank, space = self.blank, self.space
        root = _Prefix(None, -1, -1, "")
        beams: list = [[root, 0.0, NEG_INF, 0.0]]  # [node, ln p_blank, ln p_label, bonus]
        width, margin = o.beam_width, o.beam_margin
        for t in range(log_probs.shape[0]):
            row = log_probs[t].tolist()
            lp_blank = row[blank]
            candidates = [c for c, lp in enumerate(row) if lp >= o.prune_log_prob and c != blank]
            # id(node) -> [node, ln p_blank, ln p_label, bonus]; an extension not yet built is keyed by
            # (id(parent), label) -> [None, -inf, ln p_label, bonus, parent, label]
            nxt: dict = {}
            for node, p_b, p_nb, *_ in beams:
                total = _logaddexp(p_b, p_nb)
                # blank, and a repeat of the last label, keep the prefix
                stay_b = total + lp_blank
                stay_nb = p_nb + row[node.label] if node.label >= 0 else NEG_INF
                entry = nxt.get(id(node))
                if entry is None:
                    entry = nxt[id(node)] = [node, stay_b, stay_nb, node.bonus]
                else:
                    entry[1] = _logaddexp(entry[1], stay_b)
                    entry[2] = _logaddexp(entry[2], stay_nb)
                for c in candidates:
                    lp = row[c]
                    if c == space and (node.label < 0 or node.label == space):
                        # a leading space, or a second space after a blank: the text does not change
                        if node.label < 0:
                            entry[1] = _logaddexp(entry[1], total + lp)
                        else:
                            entry[2] = _logaddexp(entry[2], p_b + lp)
                        continue
                    # the same label again only starts a new character after a blank
                    emit = (p_b if c == node.label else total) + lp
                    child = node.children.get(c)
                    if child is None:
                        bonus = node.tried.get(c)
                        if bonus is None:
                            bonus = node.tried[c] = self._child_bonus(node, c)
                        if bonus > NEG_INF:  # -inf: outside the vocabulary with unk_offset -inf
                            nxt[(id(node), c)] = [None, NEG_INF, emit, bonus, node, c]
                        continue
                    if emit > child.emit:
                        child.emit, child.frame = emit, t
                    other = nxt.get(id(child))
                    if other is None:
                        nxt[id(child)] = [child, NEG_INF, emit, child.bonus]
                    else:
                        other[2] = _logaddexp(other[2], emit)
            entries = list(nxt.values())
            ranked = sorted((-(_logaddexp(e[1], e[2]) + e[3]), i) for i, e in enumerate(entries))
            cut = ranked[0][0] + margin  # ranked by negated score, best first (never empty: every beam stays)
            beams = [entries[i] for score, i in ranked[:width] if score <= cut]
            for e in beams:
                if e[0] is None:  # a surviving new extension: build it, first emitted here
                    child = e[0] = self._child(e[4], e[5], t, e[3])
                    child.emit = e[2]
        # "A B" and "A B " are the same text (a trailing space is dropped): add their probabilities first
        finals: dict[str, tuple[_Prefix, float]] = {}
        for node, p_b, p_nb, *_ in beams:
            key = node.text.rstrip(" ")
            ctc = _logaddexp(p_b, p_nb)
            if key in finals:
                other, other_ctc = finals[key]
                finals[key] = (node if node.label != space else other, _logaddexp(ctc, other_ctc))
            else:
                finals[key] = (node, ctc)
        best, best_score = root, NEG_INF
        for node, ctc in finals.values():
            score = self._final_score(node, ctc)
            if score > best_score:
                best, best_score = node, score
        if best_score == NEG_INF and finals:  # unk_offset -inf and every hypothesis ends inside a non-word
            best = max(finals.values(), key=lambda f: f[1])[0]
        labels, frames = [], []
        node = best
        while node.parent is not None:
            labels.append(node.label)
            frames.append(node.frame)
            node = node.parent
        return from_path(np.array(labels[::-1], dtype=np.int64), np.array(frames[::-1], dtype=np.int64),
                         self.labels, frame_duration)
