"""Generation metrics for code tasks: BLEU-4 (corpus and smoothed sentence-level), exact match, ChrF, CodeBLEU.

BLEU (Papineni et al., 2002), per n-gram order n = 1..4 the clipped precision

    p_n = sum_s sum_g min(count_hyp(g), count_ref(g)) / sum_s sum_g count_hyp(g)

and BLEU = BP * exp(mean_n log p_n), with brevity penalty BP = min(1, exp(1 - r / c)) for total
reference length r and hypothesis length c. ``corpus_bleu`` sums the counts over the corpus first
(as CodeXGLUE translation / multi-bleu do); ``sentence_bleu`` is the smoothed per-sentence BLEU-4
used for code summarization (Lin & Och 2004 "smoothing 2": add 1 to numerator and denominator for
n > 1), averaged over sentences. Both are on a scale of 0..100.

Code is tokenized by ``code_tokens`` (identifiers, numbers, string literals and single operator
characters), so "a.b()" and "a . b ( )" score the same: the mirror's datasets mix both styles.

ChrF (Popovic 2015) works on characters with all whitespace removed; for n = 1..6 it counts
hypothesis, reference and clipped matching character n-grams, summed over the corpus (as
sacrebleu's corpus score does), then averages precision P and recall R over the orders that
occur in both (sacrebleu's "effective order") and reports F_beta = (1 + b^2) P R / (b^2 P + R),
beta = 2, on a scale of 0..100. CodeBLEU is in ``codebleu.py``; docs/code_metrics.md lists how it
differs from the CodeXGLUE script.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|[A-Za-z_][A-Za-z_0-9]*|\d+(?:\.\d+)?[A-Za-z]*|\S')


def code_tokens(text: str) -> list[str]:
    """Split code or text into tokens: string/char literals, identifiers, numbers, single symbols."""
    return _TOKEN.findall(text)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _match_counts(hyp: Sequence[str], ref: Sequence[str], max_n: int) -> tuple[list[int], list[int]]:
    """Clipped n-gram matches and hypothesis n-gram totals for n = 1..max_n."""
    matches, totals = [], []
    for n in range(1, max_n + 1):
        h, r = _ngrams(hyp, n), _ngrams(ref, n)
        matches.append(sum(min(c, r[g]) for g, c in h.items()))
        totals.append(max(len(hyp) - n + 1, 0))
    return matches, totals


def _brevity_penalty(hyp_len: int, ref_len: int) -> float:
    if hyp_len == 0:
        return 0.0
    return 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str], max_n: int = 4) -> float:
    """Corpus BLEU-``max_n`` (0..100) of hypothesis strings against one reference each (no smoothing)."""
    if len(hyps) != len(refs):
        raise ValueError(f"corpus_bleu: {len(hyps)} hypotheses but {len(refs)} references")
    matches, totals = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for h, r in zip(hyps, refs):
        ht, rt = code_tokens(h), code_tokens(r)
        m, t = _match_counts(ht, rt, max_n)
        matches = [a + b for a, b in zip(matches, m)]
        totals = [a + b for a, b in zip(totals, t)]
        hyp_len, ref_len = hyp_len + len(ht), ref_len + len(rt)
    if min(matches) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n
    return 100.0 * _brevity_penalty(hyp_len, ref_len) * math.exp(log_p)


def sentence_bleu(hyp: str, ref: str, max_n: int = 4) -> float:
    """Smoothed sentence BLEU-``max_n`` (0..100): add-one on orders n > 1 (Lin & Och smoothing 2)."""
    ht, rt = code_tokens(hyp), code_tokens(ref)
    if not ht:
        return 0.0
    m, t = _match_counts(ht, rt, max_n)
    log_p = 0.0
    for n in range(max_n):
        num, den = (m[n], t[n]) if n == 0 else (m[n] + 1, t[n] + 1)
        if num == 0:
            return 0.0
        log_p += math.log(num / den)
    return 100.0 * _brevity_penalty(len(ht), len(rt)) * math.exp(log_p / max_n)


def mean_sentence_bleu(hyps: Sequence[str], refs: Sequence[str], max_n: int = 4) -> float:
    if len(hyps) != len(refs):
        raise ValueError(f"mean_sentence_bleu: {len(hyps)} hypotheses but {len(refs)} references")
    return sum(sentence_bleu(h, r, max_n) for h, r in zip(hyps, refs)) / max(len(hyps), 1)


def exact_match(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Percentage of hypotheses whose token sequence equals the reference's (whitespace-insensitive)."""
    if len(hyps) != len(refs):
        raise ValueError(f"exact_match: {len(hyps)} hypotheses but {len(refs)} references")
    same = sum(code_tokens(h) == code_tokens(r) for h, r in zip(hyps, refs))
    return 100.0 * same / max(len(hyps), 1)


def chrf(hyps: Sequence[str], refs: Sequence[str], order: int = 6, beta: float = 2.0) -> float:
    """Corpus ChrF (0..100): character n-gram F_beta, n = 1..``order``, whitespace removed (see module doc)."""
    if len(hyps) != len(refs):
        raise ValueError(f"chrf: {len(hyps)} hypotheses but {len(refs)} references")
    n_hyp, n_ref, n_match = [0] * order, [0] * order, [0] * order
    for h, r in zip(hyps, refs):
        h, r = "".join(h.split()), "".join(r.split())
        for n in range(1, order + 1):
            hc, rc = _ngrams(h, n), _ngrams(r, n)
            n_hyp[n - 1] += max(len(h) - n + 1, 0)
            n_ref[n - 1] += max(len(r) - n + 1, 0)
            n_match[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
    orders = [i for i in range(order) if n_hyp[i] and n_ref[i]]
    if not orders:
        return 0.0
    p = sum(n_match[i] / n_hyp[i] for i in orders) / len(orders)
    r = sum(n_match[i] / n_ref[i] for i in orders) / len(orders)
    if p + r == 0:
        return 0.0
    b2 = beta * beta
    return 100.0 * (1 + b2) * p * r / (b2 * p + r)


def generation_metrics(hyps: Sequence[str], refs: Sequence[str], language: str | None = None) -> dict:
    """``bleu`` (corpus BLEU-4), ``sbleu`` (mean smoothed sentence BLEU-4), ``em`` (exact match %), ``chrf``.

    With a programming ``language`` (code targets) also ``codebleu`` and its four parts
    (``codebleu.codebleu``; a part that cannot be computed is None).
    """
    out = {"bleu": corpus_bleu(hyps, refs), "sbleu": mean_sentence_bleu(hyps, refs), "em": exact_match(hyps, refs),
           "chrf": chrf(hyps, refs)}
    if language is not None:
        from .codebleu import codebleu

        out.update(codebleu(hyps, refs, language))
    return out
