"""BLEU, ChrF and CodeBLEU against hand-worked examples and a from-scratch BLEU reference.

BLEU and ChrF are sacrebleu's; these tests pin what our code tokenization feeds it.
"""
import importlib.util
import math
import random
from collections import Counter

import pytest

from cptpp.code import codebleu as cb
from cptpp.code.metrics import chrf, code_tokens, corpus_bleu, generation_metrics, mean_sentence_bleu, sentence_bleu

needs_java = pytest.mark.skipif(importlib.util.find_spec("tree_sitter_java") is None,
                                reason="the CPG needs the [code] extra (tree-sitter grammars)")

# ----------------------------------------------------------------------------- BLEU


def _reference_bleu(pairs, smooth):
    """Papineni BLEU-4 on code_tokens from the counts, written out; ``smooth``: add one for n > 1."""
    match, total, c, r = [0] * 4, [0] * 4, 0, 0
    for hyp, ref in pairs:
        ht, rt = code_tokens(hyp), code_tokens(ref)
        c, r = c + len(ht), r + len(rt)
        for n in range(1, 5):
            hc = Counter(tuple(ht[i:i + n]) for i in range(len(ht) - n + 1))
            rc = Counter(tuple(rt[i:i + n]) for i in range(len(rt) - n + 1))
            match[n - 1] += sum(min(k, rc[g]) for g, k in hc.items())
            total[n - 1] += sum(hc.values())
    if smooth:
        match = match[:1] + [m + 1 for m in match[1:]]
        total = total[:1] + [t + 1 for t in total[1:]]
    if c == 0 or min(match) == 0:
        return 0.0
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return 100 * bp * math.exp(sum(math.log(m / t) for m, t in zip(match, total)) / 4)


def test_bleu_keeps_a_string_literal_with_spaces_one_token():
    # tokens: hyp [x, =, "a  b", ;], ref [x, =, "a c", ;] (split at the spaces they would be 5 and 5)
    # add-one: p1 = 3/4, p2 = (1+1)/(3+1), p3 = (0+1)/(2+1), p4 = (0+1)/(1+1); BP = 1
    expected = 100 * math.exp((math.log(3 / 4) + math.log(2 / 4) + math.log(1 / 3) + math.log(1 / 2)) / 4)
    assert sentence_bleu('x = "a  b";', 'x="a c";') == pytest.approx(expected, abs=1e-12)
    assert corpus_bleu(['s = "p q\tr" + t ;'], ['s="p q\tr"+t;']) == pytest.approx(100.0)
    # the escape is one-to-one: a literal that spells the escape out is not the same word
    assert sentence_bleu('"a\ue000' + '20\ue000b" x', '"a b" x') < 100


def test_bleu_matches_a_reference_implementation_on_random_code():
    rng = random.Random(0)
    vocab = ["a", "b", "x1", "(", ")", ".", ";", "=", "return", '"s t"', "'\\t'", '"u\u3000v"', "1.5f", "\ue000"]
    worst = 0.0
    for _ in range(200):
        refs = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12))) for _ in range(rng.randint(1, 5))]
        hyps = ["".join(t if rng.random() < 0.7 else rng.choice(vocab) for t in r.split(" ")) for r in refs]
        pairs = list(zip(hyps, refs))
        worst = max(worst, abs(corpus_bleu(hyps, refs) - _reference_bleu(pairs, smooth=False)))
        expected = sum(_reference_bleu([p], smooth=True) for p in pairs) / len(pairs)
        worst = max(worst, abs(mean_sentence_bleu(hyps, refs) - expected))
    assert worst < 1e-10


# ----------------------------------------------------------------------------- ChrF


def test_chrf_hand_worked():
    # hyp "ab", ref "abc": n=1 P=2/2 R=2/3; n=2 P=1/1 R=1/2; n>=3 has no hypothesis n-gram (not averaged)
    # P = 1, R = 7/12, F2 = 5 P R / (4 P + R) = (35/12) / (55/12) = 7/11
    assert chrf(["ab"], ["abc"]) == pytest.approx(100 * 7 / 11)
    assert chrf(["a b\tc"], ["abc"]) == pytest.approx(100.0)  # whitespace is removed
    assert chrf(["xyz"], ["abc"]) == 0.0
    assert chrf([""], ["abc"]) == 0.0


def test_chrf_sums_statistics_over_the_corpus():
    # n=1: hyp 2+1, ref 3+1, match 2+0; n=2: hyp 1, ref 2, match 1 (only the first pair has bigrams)
    # P = (2/3 + 1/1) / 2 = 5/6, R = (2/4 + 1/2) / 2 = 1/2, F2 = 5 (5/6)(1/2) / (4 (5/6) + 1/2) = 25/46
    assert chrf(["ab", "x"], ["abc", "y"]) == pytest.approx(100 * 25 / 46)
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        chrf(["a", "b"], ["a"])


def test_chrf_counts_hypothesis_ngrams_only_where_the_reference_has_that_order():
    # sacrebleu: a sentence whose reference has no n-grams of order n adds no hypothesis n-grams either.
    # hyps "abc", "ab"; refs "a", "ab". n=1: hyp 5, ref 3, match 3; n=2: hyp 0+1, ref 0+1, match 1;
    # n=3: no hypothesis trigram counted. P = (3/5 + 1) / 2 = 4/5, R = 1, F2 = 5 (4/5) / (16/5 + 1) = 20/21
    assert chrf(["abc", "ab"], ["a", "ab"]) == pytest.approx(100 * 20 / 21, abs=1e-12)


# ----------------------------------------------------------------------------- CodeBLEU

METHOD = "int f(int a, int b) { int c = a + b; if (c > 0) { c = c - 1; } return c; }"
RENAMED = "int g(int x, int y) { int z = x + y; if (z > 0) { z = z - 1; } return z; }"


@needs_java
def test_identical_code_scores_100_on_every_part():
    for language, code in [("java", METHOD), ("python", "def f(a):\n    b = a + 1\n    return b\n")]:
        scores = cb.codebleu([code], [code], language)
        assert scores == {"codebleu": 100.0, "codebleu_ngram": 100.0, "codebleu_weighted": 100.0,
                          "codebleu_syntax": 100.0, "codebleu_dataflow": 100.0}, language


@needs_java
def test_renaming_variables_keeps_syntax_and_dataflow():
    scores = cb.codebleu([RENAMED], [METHOD], "java")
    assert scores["codebleu_syntax"] == 100.0 and scores["codebleu_dataflow"] == 100.0
    assert scores["codebleu_ngram"] < 50.0
    parts = [scores[f"codebleu_{p}"] for p in cb.PARTS]
    assert scores["codebleu"] == pytest.approx(sum(parts) / 4)


def test_ngram_parts_hand_worked():
    # tokens: ref [return, x, +, 1], hyp [return, x]; BP = exp(1 - 4/2)
    # precision: p1 = 2/2, p2 = 1/1, p3 and p4 have no match (hyp has none): 0.1 / max(1, 0)
    bp = math.exp(-1)
    assert cb.ngram_match(["return x"], ["return x + 1"]) == pytest.approx(bp * math.exp(2 * math.log(0.1) / 4))
    # weighted recall: unigram weights return 1 (keyword), x + 1: 0.2 -> (1 + 0.2) / 1.6; p2 = 1/3 (of
    # "return x", "x +", "+ 1"); p3 = 0.1 / 2; p4 = 0.1 / 1
    expected = bp * math.exp((math.log(1.2 / 1.6) + math.log(1 / 3) + math.log(0.05) + math.log(0.1)) / 4)
    assert cb.ngram_match(["return x"], ["return x + 1"], cb.KEYWORDS["python"]) == pytest.approx(expected)
    assert cb.ngram_match(["y"], ["return x"]) == 0.0  # no unigram match at all


@needs_java
def test_syntax_match_hand_worked():
    ref = cb.parse_cpg("int f(int a) { return a; }", "java")
    assert sorted(ref.subtrees) == sorted([
        ("(method_declaration integral_type identifier (formal_parameters (formal_parameter integral_type "
         "identifier)) (block (return_statement identifier)))"),
        "(formal_parameters (formal_parameter integral_type identifier))",
        "(formal_parameter integral_type identifier)",
        "(block (return_statement identifier))",
        "(return_statement identifier)"])
    # the candidate changes the method and its block; parameters and the return statement survive: 3 of 5
    scores = cb.codebleu(["int f(int a) { a++; return a; }"], ["int f(int a) { return a; }"], "java")
    assert scores["codebleu_syntax"] == pytest.approx(60.0)


@needs_java
def test_dataflow_match_hand_worked():
    ref = cb.parse_cpg("int f(int a) { int b = a; return b; }", "java")
    assert ref.dataflow == [(0, 0, "formal_parameter", "variable_declarator"),
                            (1, 1, "variable_declarator", "return_statement")]
    # returning a instead of b keeps the first edge only
    scores = cb.codebleu(["int f(int a) { int b = a; return a; }"], ["int f(int a) { int b = a; return b; }"], "java")
    assert scores["codebleu_dataflow"] == pytest.approx(50.0)
    # corpus level: matches and totals are summed (1 of 2, 2 of 2)
    scores = cb.codebleu(["int f(int a) { int b = a; return a; }", "int g(int x) { int y = x; return y; }"],
                         ["int f(int a) { int b = a; return b; }"] * 2, "java")
    assert scores["codebleu_dataflow"] == pytest.approx(75.0)


@needs_java
def test_java_statement_parsed_as_a_method_body():
    stmt = "assertEquals(3, list.size());"
    _cand, ref = cb.parse_pair(stmt, stmt, "java")
    assert ref.errors == 0 and ref.subtrees[0].startswith("(expression_statement (method_invocation")
    assert not any("__snippet__" in s or "method_declaration" in s for s in ref.subtrees)
    scores = cb.codebleu([stmt], [stmt], "java")
    # no definitions in the references: the dataflow part is undefined and the others are re-weighted
    assert scores["codebleu_dataflow"] is None and scores["codebleu"] == 100.0
    worse = cb.codebleu(["assertTrue(list.isEmpty());"], [stmt], "java")
    assert 0 < worse["codebleu_syntax"] < 100


def test_csharp_without_grammar_uses_the_ngram_parts_only(monkeypatch):
    monkeypatch.setattr(cb, "csharp_available", lambda: False)
    hyp, ref = "public void F(int a){G(a);}", "public void F(int b){G(b);}"
    scores = cb.codebleu([hyp], [ref], "csharp")
    assert scores["codebleu_syntax"] is None and scores["codebleu_dataflow"] is None
    assert scores["codebleu"] == pytest.approx((scores["codebleu_ngram"] + scores["codebleu_weighted"]) / 2)


def test_csharp_syntax_match_with_tree_sitter_c_sharp():
    pytest.importorskip("tree_sitter_c_sharp")
    code = "public override void Serialize(ILittleEndianOutput out1){out1.WriteShort(field_1_vcenter);}"
    parsed = cb.parse_csharp(code)
    assert parsed.errors == 0 and parsed.dataflow is None
    assert "(argument_list (argument identifier))" in parsed.subtrees
    scores = cb.codebleu([code], [code], "csharp")
    assert scores["codebleu_syntax"] == 100.0 and scores["codebleu_dataflow"] is None
    assert scores["codebleu"] == 100.0
    # a renamed local keeps the tree; a different statement does not
    assert cb.codebleu([code.replace("out1", "o")], [code], "csharp")["codebleu_syntax"] == 100.0
    assert cb.codebleu(["public override void Serialize(ILittleEndianOutput out1){return;}"], [code],
                       "csharp")["codebleu_syntax"] < 100.0


@needs_java
def test_generation_metrics_add_chrf_and_codebleu_for_code_targets():
    text = generation_metrics(["a b"], ["a b"])
    assert text["chrf"] == 100.0 and "codebleu" not in text
    code = generation_metrics([METHOD], [METHOD], "java")
    assert code["codebleu"] == 100.0 and code["chrf"] == 100.0
    with pytest.raises(ValueError, match="language='cobol' is not valid"):
        generation_metrics(["x"], ["x"], "cobol")
