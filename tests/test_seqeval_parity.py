"""Entity precision / recall / F1 equal seqeval's default (conlleval) mode, ill-formed IOB2 included."""
import random

import pytest

from cptpp.peft.tagging_data import entity_f1

seqeval_metrics = pytest.importorskip("seqeval.metrics")


def _seqeval(gold, pred):
    kw = {"zero_division": 0}  # empty prediction or gold: 0, as entity_f1, without seqeval's warning
    return {"precision": seqeval_metrics.precision_score(gold, pred, **kw),
            "recall": seqeval_metrics.recall_score(gold, pred, **kw),
            "f1": seqeval_metrics.f1_score(gold, pred, **kw)}


HAND_MADE = [
    # well-formed
    ([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-ORG"]]),
    # I- without B- (starts an entity), I- of another type (starts a new one), B- after B- (splits)
    ([["I-ORG", "I-ORG", "I-LOC", "B-LOC", "B-LOC"]], [["B-ORG", "I-ORG", "B-LOC", "B-LOC", "I-LOC"]]),
    # an entity running to the end of one sentence does not continue into the next
    ([["O", "B-PER"], ["I-PER", "O"]], [["O", "B-PER"], ["B-PER", "O"]]),
    ([["B-PER", "I-LOC", "I-LOC", "O", "I-PER"]], [["B-PER", "B-LOC", "I-LOC", "O", "I-PER"]]),
    # nothing predicted, nothing gold
    ([["B-PER", "O"]], [["O", "O"]]),
    ([["O", "O"]], [["B-MISC", "I-MISC"]]),
]


@pytest.mark.parametrize("gold,pred", HAND_MADE)
def test_entity_f1_equals_seqeval_on_hand_made_sequences(gold, pred):
    ours, theirs = entity_f1(gold, pred), _seqeval(gold, pred)
    for key in ("precision", "recall", "f1"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12), key


def test_entity_f1_hand_made_values():
    # case 2: gold ORG(0,2) LOC(2,3) LOC(3,4) LOC(4,5); pred ORG(0,2) LOC(2,3) LOC(3,5): 2 of 3, 2 of 4
    m = entity_f1(*HAND_MADE[1])
    assert (m["precision"], m["recall"]) == pytest.approx((2 / 3, 1 / 2))


def test_entity_f1_equals_seqeval_on_random_tag_sequences():
    rng = random.Random(0)
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    worst = 0.0
    for _ in range(300):
        gold, pred = [], []
        for _ in range(rng.randint(1, 5)):
            g = [rng.choice(tags) for _ in range(rng.randint(1, 12))]  # ill-formed sequences are common
            gold.append(g)
            pred.append([t if rng.random() < 0.6 else rng.choice(tags) for t in g])
        ours, theirs = entity_f1(gold, pred), _seqeval(gold, pred)
        worst = max(worst, *(abs(ours[k] - theirs[k]) for k in ("precision", "recall", "f1")))
    assert worst < 1e-12
