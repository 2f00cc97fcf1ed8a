"""course_lib.tokenizer: round trips, a hand-worked BPE example, and the fast trainer equals the textbook one."""

from __future__ import annotations

import random

import pytest

from course_lib.tokenizer import BPETokenizer, CharTokenizer, get_pair_counts, merge, naive_bpe_merges


def test_pair_counts_and_merge_by_hand():
    assert get_pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert get_pair_counts([1, 1, 1]) == {(1, 1): 2}  # overlapping occurrences both count
    assert get_pair_counts([7]) == {}
    assert merge([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert merge([1, 1, 1], (1, 1), 9) == [9, 1]  # left to right, no overlap
    assert merge([], (1, 2), 9) == []


def test_bpe_reproduces_the_classic_worked_example():
    # "aaabdaaabac": Z = aa, then Y = ab (ties broken by the smaller pair), then X = ZY: "XdXac".
    tok = BPETokenizer.train("aaabdaaabac", 3)
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.vocab[258] == b"aaab"


def _random_text(rng: random.Random, n: int) -> str:
    alphabet = "abc de\n\t  ,.!?é漢字🙂_0123" + "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(40))
    return "".join(rng.choice(alphabet) for _ in range(n))


@pytest.mark.parametrize("seed", range(8))
def test_bpe_round_trips_any_text(seed):
    rng = random.Random(seed)
    tok = BPETokenizer.train(_random_text(rng, 3000), 60)
    for _ in range(20):
        text = _random_text(rng, rng.randrange(0, 200))
        assert tok.decode(tok.encode(text)) == text
    # text with characters never seen in training still round-trips (byte fallback)
    assert tok.decode(tok.encode("\u2603 snow \U0001f600")) == "\u2603 snow \U0001f600"


@pytest.mark.parametrize("seed", range(3))
def test_fast_training_equals_the_textbook_algorithm(seed):
    text = _random_text(random.Random(seed), 4000) + " the theory of the thing " * 30
    assert BPETokenizer.train(text, 80).merges == naive_bpe_merges(text, 80)


def test_merges_compress_and_never_cross_pre_tokens():
    text = "def function(argument): return argument  # a comment\n" * 50
    tok = BPETokenizer.train(text, 40)
    ids = tok.encode(text)
    assert len(ids) < len(text.encode()) / 3
    for token in (tok.vocab[i] for i in set(ids)):
        word = token.decode("utf-8", errors="ignore")
        assert " " not in word.strip(" ") or word.isspace(), word  # a space only leads a word


def test_save_and_load(tmp_path):
    tok = BPETokenizer.train("hello hello world " * 20, 10)
    tok.save(tmp_path / "bpe.json")
    again = BPETokenizer.load(tmp_path / "bpe.json")
    assert again.merges == tok.merges and again.encode("hello world") == tok.encode("hello world")
    (tmp_path / "other.json").write_text('{"kind": "something"}')
    with pytest.raises(ValueError, match="not a saved BPETokenizer"):
        BPETokenizer.load(tmp_path / "other.json")


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="does not exist yet"):
        BPETokenizer([(300, 1)])
    with pytest.raises(ValueError, match="not in the vocabulary"):
        BPETokenizer().decode([999])
    with pytest.raises(TypeError):
        BPETokenizer().encode(b"bytes")


def test_char_tokenizer_round_trip_and_errors():
    tok = CharTokenizer.train("hello world")
    assert tok.vocab_size == 8 and tok.decode(tok.encode("low")) == "low"
    assert tok.encode(" de") == [0, 1, 2]  # sorted characters: ' ' < 'd' < 'e'
    with pytest.raises(ValueError, match="'z' is not in"):
        tok.encode("z")
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        tok.decode([8])
