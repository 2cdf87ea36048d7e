"""Generation metrics for code tasks: BLEU-4 (corpus and smoothed sentence-level), exact match, ChrF, CodeBLEU.

BLEU and ChrF are sacrebleu's (``sacrebleu.metrics.BLEU`` / ``CHRF``); this module only decides
what text they see. BLEU (Papineni et al., 2002) per n-gram order n = 1..4 takes the clipped precision

    p_n = sum_s sum_g min(count_hyp(g), count_ref(g)) / sum_s sum_g count_hyp(g)

and BLEU = BP * exp(mean_n log p_n), with brevity penalty BP = min(1, exp(1 - r / c)) for total
reference length r and hypothesis length c. ``corpus_bleu`` sums the counts over the corpus first
(as CodeXGLUE translation / multi-bleu do; sacrebleu ``smooth_method="none"``); ``sentence_bleu``
is the smoothed per-sentence BLEU-4 used for code summarization (Lin & Och 2004 "smoothing 2": add
1 to numerator and denominator for n > 1; sacrebleu ``smooth_method="add-k"``, k = 1, every order
kept), averaged over sentences. Both are on a scale of 0..100.

Code is tokenized by ``code_tokens`` (identifiers, numbers, string literals and single operator
characters), so "a.b()" and "a . b ( )" score the same: the mirror's datasets mix both styles and
CodeXGLUE's numbers are on pre-tokenized code. sacrebleu gets the tokens joined by spaces with
``tokenize="none"``; whitespace inside a string literal is escaped so the literal stays one word.

ChrF (Popovic 2015) is sacrebleu's default chrF: characters with whitespace removed, n = 1..6,
statistics summed over the corpus, precision and recall averaged over the orders that occur
("effective order"), F_beta with beta = 2, on a scale of 0..100. CodeBLEU is in ``codebleu.py``;
docs/code_metrics.md lists how it differs from the CodeXGLUE script.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

try:
    from sacrebleu.metrics import BLEU, CHRF
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError("cptpp.code.metrics needs sacrebleu; install the [code] extra: "
                      "pip install 'cptpp[code]' (from a checkout: pip install -e '.[code]')") from e

_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|[A-Za-z_][A-Za-z_0-9]*|\d+(?:\.\d+)?[A-Za-z]*|\S')
# sacrebleu's tokenize="none" splits words with str.split(); a literal's whitespace (and the escape
# character itself) is written as ESC hex ESC, which is one-to-one, so equal words <=> equal tokens.
_ESC = "\ue000"
_SPLITS = re.compile(rf"[\s{_ESC}]")
_CORPUS_BLEU = BLEU(tokenize="none", smooth_method="none")
_SENTENCE_BLEU = BLEU(tokenize="none", smooth_method="add-k", smooth_value=1, effective_order=False)
_CHRF = CHRF()


def code_tokens(text: str) -> list[str]:
    """Split code or text into tokens: string/char literals, identifiers, numbers, single symbols."""
    return _TOKEN.findall(text)


def _words(text: str) -> str:
    """``code_tokens`` as one space-separated line of words for sacrebleu's ``tokenize="none"``."""
    return " ".join(_SPLITS.sub(lambda m: f"{_ESC}{ord(m.group()):x}{_ESC}", t) for t in code_tokens(text))


def _check_lengths(name: str, hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{name}: {len(hyps)} hypotheses but {len(refs)} references")


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str], max_n: int = 4) -> float:
    """Corpus BLEU-``max_n`` (0..100) of hypothesis strings against one reference each (no smoothing)."""
    _check_lengths("corpus_bleu", hyps, refs)
    bleu = _CORPUS_BLEU if max_n == 4 else BLEU(tokenize="none", smooth_method="none", max_ngram_order=max_n)
    return bleu.corpus_score([_words(h) for h in hyps], [[_words(r) for r in refs]]).score


def sentence_bleu(hyp: str, ref: str, max_n: int = 4) -> float:
    """Smoothed sentence BLEU-``max_n`` (0..100): add-one on orders n > 1 (Lin & Och smoothing 2)."""
    bleu = _SENTENCE_BLEU if max_n == 4 else BLEU(tokenize="none", smooth_method="add-k", smooth_value=1,
                                                  effective_order=False, max_ngram_order=max_n)
    # corpus_score of one sentence is sentence_score without its effective_order warning
    return bleu.corpus_score([_words(hyp)], [[_words(ref)]]).score


def mean_sentence_bleu(hyps: Sequence[str], refs: Sequence[str], max_n: int = 4) -> float:
    _check_lengths("mean_sentence_bleu", hyps, refs)
    return sum(sentence_bleu(h, r, max_n) for h, r in zip(hyps, refs)) / max(len(hyps), 1)


def exact_match(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Percentage of hypotheses whose token sequence equals the reference's (whitespace-insensitive)."""
    _check_lengths("exact_match", hyps, refs)
    same = sum(code_tokens(h) == code_tokens(r) for h, r in zip(hyps, refs))
    return 100.0 * same / max(len(hyps), 1)


def chrf(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus ChrF (0..100): sacrebleu's chrF (character n-grams 1..6, whitespace removed, beta = 2)."""
    _check_lengths("chrf", hyps, refs)
    return _CHRF.corpus_score(list(hyps), [list(refs)]).score


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
