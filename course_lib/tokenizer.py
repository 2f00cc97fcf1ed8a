"""Tokenizers (notebook 05): characters, and byte-pair encoding (Sennrich et al. 2016).

A tokenizer maps text to a list of integer ids and back. ``CharTokenizer``
gives every character its own id. ``BPETokenizer`` starts from the 256 byte
values of UTF-8 -- so *any* text can be encoded -- and learns merges: it
repeatedly finds the most frequent adjacent pair of ids and replaces it with a
new id. Merges never cross a pre-token boundary (a word with its leading
space, a run of punctuation, a run of white space), as in GPT-2.

The two teaching functions, :func:`get_pair_counts` and :func:`merge`, are
the whole algorithm on one sequence. :meth:`BPETokenizer.train` produces the
same merges but keeps pair counts up to date incrementally, so 512 merges on
the 1.5 M-character docstring corpus take seconds, not the hours a re-scan
per merge would.
"""

from __future__ import annotations

import heapq
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

Pair = tuple[int, int]

# GPT-2's pre-tokenization, written for Python's `re`: a word or a number or a
# run of other symbols, each with an optional leading space; then white space.
PRETOKEN = re.compile(r" ?[^\W\d_]+| ?\d+| ?[^\s\w]+|_+|\s+(?!\S)|\s+")


def get_pair_counts(ids: Sequence[int]) -> dict[Pair, int]:
    """How often each adjacent pair occurs in ``ids``: ``{(a, b): count}``.

    Overlapping occurrences count separately: ``[1, 1, 1]`` has the pair
    ``(1, 1)`` twice.
    """
    counts: dict[Pair, int] = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right.

    After a replacement the scan continues *after* the pair, so ``[1, 1, 1]``
    merged on ``(1, 1)`` gives ``[new_id, 1]``.
    """
    out: list[int] = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class CharTokenizer:
    """One id per character seen in the training text (ids in sorted character order)."""

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars = sorted(set(chars))
        if not self.chars:
            raise ValueError("a CharTokenizer needs at least one character")
        if any(len(c) != 1 for c in self.chars):
            raise ValueError("CharTokenizer takes single characters")
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        return cls(text)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as missing:
            raise ValueError(f"character {missing.args[0]!r} is not in this tokenizer's vocabulary") from None

    def decode(self, ids: Iterable[int]) -> str:
        ids = list(ids)
        bad = [i for i in ids if not 0 <= i < len(self.chars)]
        if bad:
            raise ValueError(f"ids must lie in [0, {len(self.chars)}), got {bad[:5]}")
        return "".join(self.chars[i] for i in ids)


class BPETokenizer:
    """Byte-level BPE: 256 byte ids, then one id per learned merge (256, 257, ...)."""

    def __init__(self, merges: Sequence[Pair] = ()) -> None:
        self.merges: list[Pair] = [tuple(m) for m in merges]
        self.ranks: dict[Pair, int] = {}
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(256)}
        for rank, (a, b) in enumerate(self.merges):
            new_id = 256 + rank
            if a not in self.vocab or b not in self.vocab:
                raise ValueError(f"merge {rank} uses an id that does not exist yet: {(a, b)}")
            self.ranks[(a, b)] = rank
            self.vocab[new_id] = self.vocab[a] + self.vocab[b]
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.merges)

    # -- training ---------------------------------------------------------------

    @classmethod
    def train(cls, text: str, num_merges: int, verbose: bool = False) -> BPETokenizer:
        """Learn ``num_merges`` merges from ``text``.

        Equivalent to: split ``text`` into pre-tokens, and ``num_merges`` times
        merge the most frequent pair (counted over all pre-tokens, ties broken by
        the smaller pair) everywhere. Counts are kept per *distinct* pre-token
        and updated only where a merge happens, with a heap of candidate pairs.
        """
        if num_merges < 0:
            raise ValueError(f"num_merges must be >= 0, got {num_merges}")
        words = Counter(PRETOKEN.findall(text))
        seqs = [list(w.encode("utf-8")) for w in words]
        freqs = list(words.values())
        counts: dict[Pair, int] = defaultdict(int)
        where: dict[Pair, set[int]] = defaultdict(set)  # pair -> indices of words containing it
        for w, (seq, f) in enumerate(zip(seqs, freqs)):
            for pair in zip(seq, seq[1:]):
                counts[pair] += f
                where[pair].add(w)
        heap = [(-c, pair) for pair, c in counts.items()]
        heapq.heapify(heap)
        merges: list[Pair] = []
        while len(merges) < num_merges and heap:
            neg, pair = heapq.heappop(heap)
            if counts.get(pair, 0) != -neg or -neg <= 0:
                continue  # stale heap entry
            new_id = 256 + len(merges)
            merges.append(pair)
            if verbose:
                print(f"merge {len(merges)}: {pair} -> {new_id} ({-neg} times)")
            touched: dict[Pair, int] = {}
            for w in list(where[pair]):
                seq, f = seqs[w], freqs[w]
                for p in zip(seq, seq[1:]):  # remove this word's old pairs
                    counts[p] -= f
                    touched[p] = counts[p]
                new_seq = merge(seq, pair, new_id)
                seqs[w] = new_seq
                for p in zip(new_seq, new_seq[1:]):  # add its new pairs
                    counts[p] += f
                    touched[p] = counts[p]
                    where[p].add(w)
            del counts[pair]
            touched.pop(pair, None)
            for p, c in touched.items():
                if c > 0:
                    heapq.heappush(heap, (-c, p))
        return cls(merges)

    # -- encoding -------------------------------------------------------------------

    def _encode_pretoken(self, piece: str) -> list[int]:
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        ids = list(piece.encode("utf-8"))
        while len(ids) >= 2:
            # the earliest-learned merge present in the sequence goes first
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, float("inf")))
            if pair not in self.ranks:
                break
            ids = merge(ids, pair, 256 + self.ranks[pair])
        if len(self._cache) < 100_000:
            self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Text to ids: pre-tokenize, then apply merges in the order they were learned."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        out: list[int] = []
        for piece in PRETOKEN.findall(text):
            out.extend(self._encode_pretoken(piece))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Ids to text. Invalid UTF-8 (a sequence cut inside a character) becomes U+FFFD."""
        try:
            data = b"".join(self.vocab[i] for i in ids)
        except KeyError as missing:
            raise ValueError(f"id {missing.args[0]} is not in the vocabulary (size {self.vocab_size})") from None
        return data.decode("utf-8", errors="replace")

    # -- saving ---------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": "byte-bpe", "merges": self.merges}), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("kind") != "byte-bpe":
            raise ValueError(f"{path} is not a saved BPETokenizer")
        return cls([tuple(m) for m in data["merges"]])


def naive_bpe_merges(text: str, num_merges: int) -> list[Pair]:
    """The textbook algorithm, re-counting every pair after each merge (slow; for tests and teaching)."""
    words = Counter(PRETOKEN.findall(text))
    seqs = {w: list(w.encode("utf-8")) for w in words}
    merges: list[Pair] = []
    for _ in range(num_merges):
        counts: dict[Pair, int] = defaultdict(int)
        for w, seq in seqs.items():
            for pair, c in get_pair_counts(seq).items():
                counts[pair] += c * words[w]
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        new_id = 256 + len(merges)
        merges.append(best)
        seqs = {w: merge(seq, best, new_id) for w, seq in seqs.items()}
    return merges
