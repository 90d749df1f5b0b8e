"""The checks of notebooks/02b_subwords.ipynb: a reference and a verify function per piece and exercise."""

import functools
import math
from collections.abc import Callable
from itertools import pairwise
from typing import Any

from tinytorch.bpe import END_OF_TEXT, BPETokenizer, _encode_chunk, _merge
from tinytorch.checks import add_hints, piece
from tinytorch.checks.ch02_embeddings import _TEXT
from tinytorch.checks.helpers import Wrong, _close, _describe, _num, _number, _returned


def _count_pairs(ids: list[int]) -> dict[tuple[int, int], int]:
    """How often each pair of neighbours occurs in `ids`: {(a, b): count}."""
    counts = {}
    for pair in pairwise(ids):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def _train_merges(ids: list[int], num_merges: int) -> list[tuple[int, int]]:
    """The pairs merged by `num_merges` steps of BPE on `ids`, in order; merge i makes token 256 + i."""
    merges = []
    for i in range(num_merges):
        counts = _count_pairs(ids)
        pair = min(counts, key=lambda p: (-counts[p], p))  # the most frequent; on a tie, the smallest pair
        ids = _merge(ids, pair, 256 + i)
        merges.append(pair)
    return merges


def _id_list(out: Any, call: str) -> list:
    """`out` if it is a list of Python ints, else Wrong saying what came back."""
    out = _returned(out, call, "a list of ids", list)
    if any(not isinstance(i, int) or isinstance(i, bool) for i in out):
        raise Wrong(f"{call} must return a list of ints, got {_describe(out)}")
    return out


@piece("count_pairs", "02b_subwords", "how often each pair of neighbouring ids occurs: {(a, b): count}", _count_pairs)
def _verify_count_pairs(count_pairs: Callable) -> None:
    for ids in ([1, 2, 3, 1, 2], [7, 7, 7], list(b"to be or not to be"), [5], []):
        call = f"count_pairs({_describe(ids)})"
        out = _returned(count_pairs(list(ids)), call, "a dict {(a, b): count}", dict)
        want = _count_pairs(ids)
        if out == want:
            continue
        key = next((k for k in out if not isinstance(k, tuple) or len(k) != 2), None)
        if key is not None:
            raise Wrong(f"the keys must be pairs of ids as tuples, (a, b); {call} has the key {key!r}")
        if ids == [7, 7, 7] and out.get((7, 7)) == 1:
            raise Wrong("[7, 7, 7] holds (7, 7) twice, at positions 0-1 and 1-2: when counting, pairs overlap")
        if out == _count_pairs(ids[:-1]):
            raise Wrong(
                f"{call} leaves out the last pair, {tuple(ids[-2:])}: every id but the last has a right neighbour"
            )
        extra, missing = [p for p in out if p not in want], [p for p in want if p not in out]
        if extra:
            raise Wrong(f"{call} counts {extra[0]}, which is not a pair of neighbours: pairwise(ids) gives them")
        if missing:
            raise Wrong(f"{call} leaves out the pair {missing[0]}")
        pair = next(p for p in want if out[p] != want[p])
        raise Wrong(f"{call} gives {pair} the count {out[pair]}, but it occurs {want[pair]} times")


@piece("merge", "02b_subwords", "every occurrence of a pair, left to right, replaced by a new id", _merge)
def _verify_merge(merge: Callable) -> None:
    cases = [
        ([1, 2, 3, 1, 2], (1, 2), 99),
        ([7, 7, 7], (7, 7), 256),  # overlapping occurrences: left to right
        ([1, 2, 1, 2], (1, 2), 300),  # neighbouring occurrences
        ([5, 6, 5], (6, 5), 257),  # at the end
        ([3, 1], (1, 2), 256),  # absent
        ([], (1, 2), 256),
    ]
    for ids, pair, new_id in cases:
        call = f"merge({ids}, {pair}, {new_id})"
        given = list(ids)
        out = _id_list(merge(given, pair, new_id), call)
        if given != ids:
            raise Wrong(f"{call} changed the list it was given: build a new list and leave ids as it is")
        want = _merge(ids, pair, new_id)
        if out == want:
            continue
        if out == _merge(ids[::-1], pair[::-1], new_id)[::-1]:
            raise Wrong(f"{call} returned {out}: merge from left to right, so the first 7 joins the second")
        if out.count(new_id) > want.count(new_id):
            raise Wrong(f"{call} returned {out}: an id joined two pairs; after a merge, skip both of its ids (i += 2)")
        if len(out) > len(want) and out.count(new_id) == want.count(new_id) > 0:
            raise Wrong(f"{call} returned {out}: a merged pair's second id is still there; skip both ids (i += 2)")
        first = ids.index(pair[0]) if pair[0] in ids else 0
        only_first = ids[:first] + [new_id] + ids[first + 2 :]
        if want.count(new_id) > 1 and out == only_first:
            raise Wrong(f"{call} returned {out}: only the first occurrence was merged; replace every occurrence")
        raise Wrong(f"{call} returned {out}, expected {want}")


@piece("train_merges", "02b_subwords", "the training loop: count, merge the most frequent pair, repeat", _train_merges)
def _verify_train_merges(train_merges: Callable) -> None:
    for text, num_merges in (("aaabdaaabac", 3), ("to be or not to be, that is the question", 8), ("hello", 0)):
        ids = list(text.encode("utf-8"))
        call = f"train_merges(list({text!r}.encode()), {num_merges})"
        out = _returned(train_merges(list(ids), num_merges), call, "a list of pairs", (list, tuple))
        if len(out) != num_merges:
            raise Wrong(f"{call} returned {len(out)} merges, expected {num_merges}: one pair per merge")
        state = list(ids)
        for i, (got, want) in enumerate(zip(out, _train_merges(ids, num_merges), strict=True)):
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise Wrong(f"{call}: merge {i} must be a pair of ids (a, b), got {got!r}")
            got, counts = tuple(got), _count_pairs(state)
            if got in [tuple(p) for p in out[:i]]:
                raise Wrong(
                    f"{call}: merge {i} repeats the pair {got}; after choosing a pair, replace it in ids with "
                    f"merge(ids, pair, 256 + i) before counting again"
                )
            if got not in counts:
                raise Wrong(
                    f"{call}: merge {i}, {got}, is not a pair of neighbours at that point: merge i makes token "
                    "256 + i, and each merge must change ids before the next count"
                )
            if counts[got] < counts[want]:
                raise Wrong(f"{call}: merge {i}, {got}, occurs {counts[got]} times; another pair occurs more often")
            if got != want:
                raise Wrong(
                    f"{call}: at merge {i}, {got} and {want} both occur {counts[got]} times; on a tie take the "
                    "smaller pair, min(counts, key=lambda p: (-counts[p], p))"
                )
            state = _merge(state, want, 256 + i)


def _first_found(ids: list[int], ranks: dict[tuple[int, int], int]) -> list[int]:
    """A typical mistake: merging the first pair found that has a rank, instead of the lowest rank."""
    while True:
        pair = next((p for p in pairwise(ids) if p in ranks), None)
        if pair is None:
            return ids
        ids = _merge(ids, pair, ranks[pair])


@piece("encode_chunk", "02b_subwords", "a chunk's bytes merged in the order the merges were learned", _encode_chunk)
def _verify_encode_chunk(encode_chunk: Callable) -> None:
    ranks = {(98, 99): 256, (97, 98): 257, (97, 256): 258, (258, 100): 259}  # bc, ab, a+bc, abc+d
    learned = _small_bpe()
    cases = [(list(b"abcd"), ranks), (list(b"abab"), ranks), (list(b"xbcbc"), ranks), ([97], ranks), ([], ranks)]
    cases += [(list(chunk.encode("utf-8")), learned.ranks) for chunk in (" Romeo", " wherefore", " thou", " Hamlet")]
    for ids, table in cases:
        name = "ranks" if table is ranks else "the ranks of a small trained tokenizer"
        call = f"encode_chunk({ids}, {name})"
        out = _id_list(encode_chunk(list(ids), dict(table)), call)
        want = _encode_chunk(ids, table)
        if out == want:
            continue
        if out == _first_found(ids, table):
            raise Wrong(
                f"{call} returned {out}: merge the pair of lowest rank first, wherever it stands, not the first "
                "pair found"
            )
        pair = min(pairwise(ids), key=lambda p: table.get(p, math.inf))
        if out == _merge(ids, pair, table[pair]):
            raise Wrong(f"{call} returned {out} after one merge: repeat until no pair present has a rank")
        raise Wrong(f"{call} returned {out}, expected {want}" + (f" with ranks = {ranks}" if table is ranks else ""))


@functools.cache
def _small_bpe_cached() -> BPETokenizer:
    return BPETokenizer.train(_TEXT * 2 + "O Hamlet, thou art the question.\n", 300)


def _small_bpe() -> BPETokenizer:
    """A tokenizer of 300 tokens trained on two lines of Romeo and Juliet (a copy: the learner's code may change it)."""
    return BPETokenizer.from_dict(_small_bpe_cached().to_dict())


def _chars_per_token(tokenizer: BPETokenizer, text: str) -> float:
    """The number of characters of `text` per token of tokenizer.encode(text)."""
    return len(text) / len(tokenizer.encode(text))


def _glued_tokens(tokens: list[str]) -> list[str]:
    """The tokens in which a letter is directly followed by whitespace (a space, a newline, ...)."""
    return [token for token in tokens if any(a.isalpha() and b.isspace() for a, b in pairwise(token))]


def _join_documents(tokenizer: BPETokenizer, documents: list[str]) -> list[int]:
    """The ids of the documents, in order, each followed by the end-of-text token's id."""
    end = tokenizer.special_tokens[END_OF_TEXT]
    ids = []
    for document in documents:
        ids += tokenizer.encode(document) + [end]
    return ids


@piece("my_chars_per_token", "02b_subwords", "the characters of a text per token", _chars_per_token)
def _verify_chars_per_token(my_chars_per_token: Callable) -> None:
    for text in (_TEXT, "Romeo", "café 🙂", "O Romeo, Romeo!"):
        tokenizer = _small_bpe()
        call = f"my_chars_per_token(tokenizer, {_describe(text)})"
        got = _number(my_chars_per_token(tokenizer, text), f"{call}'s result")
        n_tokens = len(tokenizer.encode(text))
        want = len(text) / n_tokens
        if _close(got, want):
            continue
        if _close(got, n_tokens / len(text)):
            raise Wrong(f"{call} gave tokens per character: divide the characters by the tokens")
        if _close(got, len(text.encode("utf-8")) / n_tokens):
            raise Wrong(f"{call} counted bytes: count the characters of the text, len(text)")
        if _close(got, len(text) // n_tokens):
            raise Wrong(f"{call} is a whole number: divide with /, not //")
        raise Wrong(f"{call} returned {_num(got, 4)}: too {'large' if got > want else 'small'}")


@piece("my_glued_tokens", "02b_subwords", "the tokens in which a letter is followed by whitespace", _glued_tokens)
def _verify_glued_tokens(my_glued_tokens: Callable) -> None:
    tokens = ["the", " the", "d the", "e\n", "ROMEO:\n", ":\n", " ", "\n\n", "é ", "1 2", "o, ", "s\t", "e of"]
    for given in (tokens, tokens[::-1], [], [" thou", "thou"]):
        call = f"my_glued_tokens({_describe(given)})"
        out = _returned(my_glued_tokens(list(given)), call, "a list of tokens", list)
        want = _glued_tokens(given)
        if out == want:
            continue
        extra, missing = [t for t in out if t not in want], [t for t in want if t not in out]
        if extra:
            raise Wrong(f"{call} keeps {extra[0]!r}, but no letter in it is directly followed by whitespace")
        if missing:
            raise Wrong(f"{call} leaves out {missing[0]!r}: a letter followed by whitespace (a newline counts too)")
        raise Wrong(f"{call} returned {_describe(out)}: keep each token once, in the order of the list")


@piece(
    "my_join_documents",
    "02b_subwords",
    "documents as one list of ids, each followed by the end-of-text id",
    _join_documents,
)
def _verify_join_documents(my_join_documents: Callable) -> None:
    end = _small_bpe().special_tokens[END_OF_TEXT]
    for documents in (["To be.", "Or not."], ["Romeo"], [], ["", "JULIET:\nAy me!\n"]):
        call = f"my_join_documents(tokenizer, {documents!r})"
        out = _id_list(my_join_documents(_small_bpe(), list(documents)), call)
        want = _join_documents(_small_bpe(), documents)
        if out == want:
            continue
        found = f"{call} has {out.count(end)} end-of-text id{'' if out.count(end) == 1 else 's'} ({end})"
        if documents and not out.count(end):
            raise Wrong(
                f"{found}: add the special token's id, tokenizer.special_tokens[END_OF_TEXT], after each document; "
                "its string encoded as text is not the token"
            )
        if out.count(end) < len(documents):
            where = "after the last document too" if out.count(end) == len(documents) - 1 else "after each document"
            raise Wrong(f"{found}, expected {len(documents)}: one {where}")
        if out.count(end) > len(documents):
            raise Wrong(f"{found}, expected {len(documents)}: one per document")
        raise Wrong(f"{call}: the ids of the documents differ; encode each with tokenizer.encode(document)")
    try:
        my_join_documents(_small_bpe(), ["Exeunt.", f"a document with {END_OF_TEXT} inside"])
    except ValueError:
        return
    raise Wrong(
        f"a document that contains the string {END_OF_TEXT} was accepted: encode each document with "
        "tokenizer.encode(document), which refuses it"
    )


add_hints(
    {
        "count_pairs": (
            "Every id except the last has a right neighbour, and each such (left, right) pair counts once; pairs "
            "overlap, so [7, 7, 7] holds (7, 7) twice.",
            "Go through the neighbouring pairs with itertools.pairwise, which yields them as tuples, and keep a dict "
            "from pair to count, adding 1 each time (dict.get with a default of 0 handles a pair not seen yet; "
            "collections.Counter works too).",
        ),
        "merge": (
            "Walk through ids from left to right: where the pair starts, its two ids become one new_id, and a merged "
            "id cannot be part of a second pair, so merging (7, 7) in [7, 7, 7] gives [new_id, 7].",
            "Build a new list with an index that a while loop moves along ids: if the current id and the next one "
            "(when there is a next one) form the pair, append new_id and move two ahead; otherwise append the current "
            "id and move one ahead.",
            "Leave ids itself unchanged: build a new list rather than editing the one you were given. A for loop over "
            "ids cannot skip the second id of a merged pair.",
        ),
        "train_merges": (
            "Training repeats two steps num_merges times: count the pairs of the current ids, merge the most frequent "
            "one into the next new token (merge i makes token 256 + i), and remember the pair.",
            "In a loop over i, call your count_pairs on ids, pick the pair with the largest count (on a tie the "
            "smallest pair: min with a key of the negated count, then the pair, does both), replace ids with what "
            "merge returns for new id 256 + i, and append the pair to the list you return.",
            "Count again after every merge: a merge changes ids, so the counts of the step before are stale, and "
            "reusing them picks the same pair again.",
        ),
        "encode_chunk": (
            "Replay the merges in the order they were learned: among the pairs present, the one with the smallest "
            "rank goes first, wherever it stands, and this repeats until no pair present has a rank.",
            "Loop while there are at least two ids: find the neighbouring pair of lowest rank (min over the pairs, "
            "keyed by ranks.get with math.inf for pairs never merged); stop if it has no rank, else replace ids with "
            "what merge returns for that pair and its rank as the new id. Return the ids at the end.",
            "Merging the first pair found that has a rank is the classic mistake: always look at every pair present "
            "and take the lowest rank.",
        ),
        "my_chars_per_token": (
            "Compression is a ratio: the number of characters of the text divided by the number of tokens the "
            "tokenizer makes of it.",
            "Encode the text with tokenizer.encode, and divide the length of the text (its characters, not its UTF-8 "
            "bytes) by the number of ids, with true division, /.",
        ),
        "my_glued_tokens": (
            "A glued token holds the end of a word and the whitespace after it: look for a letter directly followed "
            "by whitespace (a space, a newline, a tab) anywhere inside the token.",
            "For each token, in order, look at its neighbouring pairs of characters (itertools.pairwise); keep the "
            "token if any pair has a first character for which str.isalpha is true and a second for which "
            "str.isspace is true.",
            "isalpha is true for letters such as é too, and isspace for newlines; a digit or a comma before the space "
            "does not make a token glued.",
        ),
        "my_join_documents": (
            "Each document is encoded as text, and after each one, the last included, comes the id of the special "
            "end-of-text token, which is not what encoding the string <|endoftext|> gives.",
            "Look the end-of-text id up once in tokenizer.special_tokens, with the key END_OF_TEXT; then, for each "
            "document in order, extend one list with tokenizer.encode of the document, followed by that id.",
            "tokenizer.encode refuses a document that contains the string <|endoftext|>: let that ValueError through, "
            "the check expects it.",
        ),
    }
)
