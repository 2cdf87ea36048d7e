from pathlib import Path

import pytest

from cptpp.download import ChecksumError, MalformedLineError

from cptpp.config import ConfigError
from cptpp.peft.tagging_data import (TaggedSentence, entity_f1, entity_spans, load_tagging, load_tagging_splits,
                                     read_tsv, relpath, tagging_metrics, token_accuracy)
from tests.conftest import mirror_dir



def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_read_tsv_sentences_and_errors(tmp_path):
    p = write(tmp_path / "a.tsv", "Hinzu\tO\nZeugen\tB-ORG\nJehovas\tI-ORG\n\n\nBerlin\tB-LOC\n")
    sents = read_tsv(p, ("O", "B-ORG", "I-ORG", "B-LOC"))
    assert sents == [TaggedSentence(("Hinzu", "Zeugen", "Jehovas"), ("O", "B-ORG", "I-ORG")),
                     TaggedSentence(("Berlin",), ("B-LOC",))]
    with pytest.raises(MalformedLineError, match=r"a\.tsv:2: malformed line .*unknown tag 'B-ORG'; "
                                                 r"expected a tag in O, B-LOC$"):
        read_tsv(p, ("O", "B-LOC"))
    unlabelled = write(tmp_path / "test-en.tsv", "Kanye\tPER\nWest\n")
    with pytest.raises(MalformedLineError, match=r"test-en\.tsv:2: malformed line 'West': no tab .*carry no tags"
                                                 r".*; expected 'token<TAB>tag'"):
        read_tsv(unlabelled)
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        read_tsv(p, expected_sha256="0" * 64)


def test_entity_spans_conlleval_chunking():
    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 2), ("LOC", 3, 4)}
    # an I- that does not continue its type starts a new entity; B- right after B- splits
    assert entity_spans(["I-ORG", "I-ORG", "I-LOC", "B-LOC", "B-LOC"]) == {
        ("ORG", 0, 2), ("LOC", 2, 3), ("LOC", 3, 4), ("LOC", 4, 5)}
    assert entity_spans(["O", "O"]) == set()
    assert entity_spans(["B-PER", "I-PER"]) == {("PER", 0, 2)}  # entity running to the end


def test_entity_f1_hand_computed():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-LOC"]]
    # gold: PER(0,2) LOC(3,4) ORG(0,1) -> 3; pred: PER(0,2) ORG(3,4) ORG(0,1) LOC(1,2) -> 4; right: 2
    m = entity_f1(gold, pred)
    assert m["precision"] == pytest.approx(2 / 4) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # a boundary error is a miss even when every token but one is right
    assert entity_f1([["B-PER", "I-PER"]], [["B-PER", "O"]])["f1"] == 0.0
    assert token_accuracy(gold, pred) == pytest.approx(4 / 6)
    assert set(tagging_metrics("pos", [["NOUN"]], [["NOUN"]])) == {"accuracy"}
    with pytest.raises(ConfigError):
        entity_f1([["O"]], [["O", "O"]])


def fake_mirror(root: Path) -> Path:
    text = root / "text"
    write(text / "wikiann-panx/train-en.tsv", "A\tB-PER\n\nb\tO\n\nc\tO\n")
    write(text / "wikiann-panx/dev-en.tsv", "".join(f"w{i}\tO\n\n" for i in range(10)))
    write(text / "wikiann-panx/dev-de.tsv", "Berlin\tB-LOC\n")
    write(text / "udpos/train-en.tsv", "dog\tNOUN\n")
    write(text / "udpos/dev-en.tsv", "cat\tNOUN\n")
    write(text / "udpos/test-en.tsv", "runs\tVERB\n")
    write(text / "udpos/de_gsd/test-de.tsv", "Hund\tNOUN\n")
    return text


def test_splits_protocol_on_a_fake_mirror(tmp_path):
    root = fake_mirror(tmp_path)
    ner = load_tagging_splits("ner", ["de"], root, seed=3, verify=False)
    valid, test = {s.words for s in ner.valid}, {s.words for s in ner.test}
    assert len(valid) == len(test) == 5 and not valid & test
    assert valid | test == {(f"w{i}",) for i in range(10)}
    assert ner.zero_shot["de"][0].tags == ("B-LOC",) and "unlabelled" in ner.protocol
    again = load_tagging_splits("ner", ["de"], root, seed=3, verify=False)
    assert [s.words for s in again.valid] == [s.words for s in ner.valid]
    pos = load_tagging_splits("pos", ["de"], root, verify=False)
    assert pos.test[0].words == ("runs",) and pos.zero_shot["de"][0].words == ("Hund",)
    assert relpath("pos", "test", "de") == "udpos/de_gsd/test-de.tsv"
    small = load_tagging_splits("ner", [], root, max_train=2, verify=False)
    assert len(small.train) == 2 and "subsampled" in small.protocol
    with pytest.raises(ConfigError, match="language='xx'"):
        load_tagging_splits("ner", ["xx"], root, verify=False)
    with pytest.raises(ChecksumError, match="sha256"):  # fake files are not the mirrored copies
        load_tagging("ner", "train", "en", root)


@pytest.mark.skipif(mirror_dir("text", "wikiann-panx") is None or mirror_dir("text", "udpos/de_gsd") is None,
                    reason="$CPTPP_DATA_MIRROR lacks text/wikiann-panx or text/udpos/de_gsd")
def test_real_files_match_source_counts():
    # counts from the mirror's SOURCE.txt; files found the way the library finds them
    dev = load_tagging("ner", "dev", "en")
    assert len(dev) == 2000 and sum(len(s.words) for s in dev) == 16372
    de = load_tagging("pos", "test", "de")
    assert len(de) == 977 and sum(len(s.words) for s in de) == 16499
