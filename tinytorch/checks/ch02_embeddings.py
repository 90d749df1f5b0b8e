"""The checks of notebooks/02_embeddings.ipynb: a reference and a verify function per piece and exercise."""

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F

from tinytorch.checks import add_hints, piece
from tinytorch.checks.helpers import Wrong, _compare, _kind, _randint, _randn, _randomized, _same, _shape
from tinytorch.config import GPTConfig
from tinytorch.embeddings import Embeddings

_TEXT = "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\nDeny thy father and refuse thy name.\n"
_CHARS = sorted(set(_TEXT))  # the vocabulary: 30 distinct characters, sorted


def _encode(text: str, chars: list[str]) -> list[int]:
    """Token ids of `text`: the index of each character in the vocabulary `chars`."""
    stoi = {c: i for i, c in enumerate(chars)}
    return [stoi[c] for c in text]


def _decode(ids: list[int], chars: list[str]) -> str:
    """The text of token ids: the characters at those indices of `chars`, joined."""
    return "".join(chars[i] for i in ids)


@piece("encode", "02_embeddings", "text -> token ids: each character's index in the vocabulary", _encode)
def _verify_encode(encode: Callable) -> None:
    text = "JULIET: O Romeo!"
    expected = _encode(text, _CHARS)
    out = encode(text, list(_CHARS))
    if isinstance(out, torch.Tensor):
        raise Wrong("encode must return a list of ints, got a tensor: return a list, e.g. [stoi[c] for c in text]")
    if isinstance(out, str):
        raise Wrong("encode must return a list of ints, got a string: one id per character, [stoi[c] for c in text]")
    if not isinstance(out, list):
        raise Wrong(f"encode must return a list of ints, got {_kind(out)}")
    if len(out) != len(text):
        raise Wrong(f"{text!r} has {len(text)} characters, so expected {len(text)} ids, got {len(out)}")
    for i, (char, want, got) in enumerate(zip(text, expected, out, strict=True)):
        if not isinstance(got, int) or isinstance(got, bool):
            raise Wrong(f"the ids must be Python ints, got {_kind(got)} at position {i}: use int(...)")
        if got == want:
            continue
        if got == ord(char):
            raise Wrong(
                f"{char!r} should get id {want}, its index in chars, got {got}: "
                "ids are positions in the vocabulary, not Unicode numbers"
            )
        if abs(got - want) == 1:
            raise Wrong(f"{char!r} should get id {want}, its index in chars, got {got}: off by one; chars[0] has id 0")
        raise Wrong(f"{char!r} (character {i} of {text!r}) should get id {want}, its index in chars, got {got}")


@piece("decode", "02_embeddings", "token ids -> text: the characters at those indices, joined", _decode)
def _verify_decode(decode: Callable) -> None:
    text = "Romeo, deny thy name!"
    ids = _encode(text, _CHARS)
    out = decode(list(ids), list(_CHARS))
    if isinstance(out, (list, tuple)):
        raise Wrong("decode must return one string: join the characters with ''.join")
    if not isinstance(out, str):
        raise Wrong(f"decode must return a string, got {_kind(out)}")
    if out != text:
        raise Wrong(f"decode(encode({text!r})) gave {out!r}: the round trip must give the text back; id i is chars[i]")


def _embed(idx: torch.Tensor, wte: torch.Tensor, wpe: torch.Tensor) -> torch.Tensor:
    """Token plus position embedding: idx (B, T), wte (V, C), wpe (block_size, C) -> (B, T, C)."""
    T = idx.size(1)
    return wte[idx] + wpe[:T]  # (B, T, C) + (T, C) -> (B, T, C)


@piece("embed", "02_embeddings", "token embedding plus position embedding: wte[idx] + wpe[:T]", _embed)
def _verify_embed(embed: Callable) -> None:
    V, block_size, C = 10, 8, 6
    idx = torch.tensor([[3, 1, 3, 7, 0], [5, 5, 2, 6, 4]])  # (2, 5): token 3 and token 5 each appear twice
    wte, wpe = _randn(V, C, seed=20), _randn(block_size, C, seed=21)
    out = _shape(embed(idx.clone(), wte.clone(), wpe.clone()), (2, 5, C), "(B, T) ids -> (B, T, C) vectors")
    if _same(out, wte[idx]):
        raise Wrong("the same token at two positions gets the same vector: add the position embedding wpe[:T]")
    if _same(out, wte[idx] + wpe[idx]):
        raise Wrong("the positions were looked up with the token ids: position t gets row t of wpe, so add wpe[:T]")
    if _same(out, wpe[:5].expand(2, 5, C)):
        raise Wrong("the token embedding is missing: add wte[idx], the row of each token id")
    _compare(out, _embed(idx, wte, wpe))


def _new_characters(text: str, known: str) -> set[str]:
    """The characters of `text` that `known` never uses."""
    return set(text) - set(known)


def _one_hot_embed(idx: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The rows of weight (V, C) picked by idx (B, T), as a one-hot product: (B, T, C)."""
    return F.one_hot(idx, num_classes=weight.size(0)).to(weight.dtype) @ weight  # (B, T, V) @ (V, C) -> (B, T, C)


def _embed_last(embeddings: Embeddings, ids: torch.Tensor) -> torch.Tensor:
    """The embedding of the last block_size ids of a 1-D tensor, as a batch of one: (1, block_size, C)."""
    return embeddings(ids[None][:, -embeddings.config.block_size :])  # (1, T) -> (1, T, C)


@piece("my_new_characters", "02_embeddings", "the characters of a text that another text never uses", _new_characters)
def _verify_new_characters(my_new_characters: Callable) -> None:
    cases = [("hello, world", "hold up"), ("", "abc"), ("abc", ""), ("Ça, naïve — ü!", "Ca, naive - u!"), ("aaa", "a")]
    for text, known in cases:
        call = f"my_new_characters({text!r}, {known!r})"
        out = my_new_characters(text, known)
        if not isinstance(out, (set, frozenset)):
            raise Wrong(f"{call} must return a set of characters, got {_kind(out)}: e.g. set(text) - set(known)")
        want = _new_characters(text, known)
        if out == want:
            continue
        if out == set(known) - set(text):
            raise Wrong(f"{call} gave the characters of known that text does not use: the question is the other way")
        extra, missing = sorted(out - want, key=repr), sorted(want - out, key=repr)
        if extra:
            where = "known uses it too" if extra[0] in set(known) else "it is not in text"
            raise Wrong(f"{call} contains {extra[0]!r}, but {where}")
        raise Wrong(f"{call} leaves out {missing[0]!r}, which text uses and known does not")


@piece("my_one_hot_embed", "02_embeddings", "a token embedding as a one-hot matrix product", _one_hot_embed)
def _verify_one_hot_embed(my_one_hot_embed: Callable) -> None:
    V, C = 10, 6
    cases = [
        (_randint(7, (2, 5), seed=310), _randn(V, C, seed=311)),  # ids below 7: the last rows of weight unused
        (_randint(V, (3, 4), seed=312), _randn(V, C, seed=313, dtype=torch.float64)),  # float64 weights
    ]
    for idx, weight in cases:
        B, T = idx.shape
        try:
            out = my_one_hot_embed(idx.clone(), weight.clone())
        except RuntimeError as error:
            if "dtype" in str(error):
                raise Wrong(
                    "F.one_hot gives int64 numbers: convert them to the weight's dtype, .to(weight.dtype), "
                    "before the product"
                ) from None
            if "cannot be multiplied" in str(error):
                raise Wrong(
                    f"F.one_hot(idx) makes only max(idx) + 1 = {int(idx.max()) + 1} columns here: "
                    "pass num_classes=weight.size(0), the V rows of weight"
                ) from None
            raise
        wrong_shapes = {
            (B, T, V): f"expected shape {(B, T, C)}, got {(B, T, V)}: that is the one-hot matrix; "
            "multiply it by weight, (B, T, V) @ (V, C)"
        }
        out = _shape(out, (B, T, C), "(B, T) ids and a (V, C) weight give (B, T, C)", mistakes=wrong_shapes)
        _compare(out, F.embedding(idx, weight))


@piece("my_embed_last", "02_embeddings", "the embedding of the last block_size ids, as a batch of one", _embed_last)
def _verify_embed_last(my_embed_last: Callable) -> None:
    config = GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=4, n_embd=16)
    with torch.random.fork_rng(devices=[]):  # Embeddings() draws initial weights from the global generator
        embeddings = _randomized(Embeddings(config), 320)
    ids = _randint(10, (13,), seed=321)  # 1-D, longer than block_size
    try:
        out = my_embed_last(copy.deepcopy(embeddings), ids.clone())
    except ValueError as error:
        if "batch dimension" in str(error):
            raise Wrong("embeddings takes a batch (B, T): make the 1-D ids a batch of one, ids[None]") from None
        if "block_size" in str(error):
            raise Wrong(
                f"embeddings raised ValueError: {str(error)[:100]}: keep only the last embeddings.config.block_size ids"
            ) from None
        raise
    with torch.no_grad():
        wrong_shapes = {
            (8, 16): "expected shape (1, 8, 16), got (8, 16): a batch of one keeps its batch dimension, ids[None]"
        }
        hint = "the last block_size ids as a batch of one: (1, block_size, C)"
        out = _shape(out, (1, 8, 16), hint, mistakes=wrong_shapes)
        if _same(out, embeddings(ids[None, :8])):
            raise Wrong("those are the first block_size ids; embed the last ones: ids[-block_size:]")
        _compare(out, _embed_last(embeddings, ids))
        short = _randint(10, (5,), seed=322)  # fewer ids than block_size: all of them
        hint = "with 5 ids, fewer than block_size 8, embed all 5"
        out = _shape(my_embed_last(copy.deepcopy(embeddings), short.clone()), (1, 5, 16), hint)
        _compare(out, _embed_last(embeddings, short))


add_hints(
    {
        "encode": (
            "A character's id is its position in the vocabulary chars (the first character has id 0), "
            "not its Unicode number; the result is one id per character of the text, as a list of ints.",
            "Build a dict from each character to its index once (enumerate gives both), then look every character "
            "of the text up in it, in order, and return the ids as a list.",
        ),
        "decode": (
            "Decoding undoes encode: id i stands for the character at position i of chars, and the result is one "
            "string, not a list of characters.",
            "Pick the character of chars at each id, in order, and glue them together with the join method of the "
            "empty string.",
        ),
        "embed": (
            "Each token's vector is its row of the token table wte plus a row of the position table wpe: the row of "
            "its position t (0, 1, ..., T-1), not of its token id.",
            "Index wte with the whole (B, T) tensor of ids to get (B, T, C); slice the first T rows of wpe, T being "
            "the second dimension of idx, to get (T, C); add the two, and broadcasting repeats the positions over B.",
        ),
        "my_new_characters": (
            "This is a question about sets of characters: those that text uses, minus those that known uses.",
            "Turn each string into the set of its characters with set, then take the difference of the two sets "
            "(the - operator, or .difference), with text's set first.",
        ),
        "my_one_hot_embed": (
            "Looking up row i of the (V, C) table is the same as multiplying a one-hot vector (1 at position i, "
            "0 elsewhere) by the table; do that for every id at once.",
            "Turn idx (B, T) into one-hot vectors (B, T, V) with F.one_hot, giving num_classes as the number of rows "
            "of weight; convert them to weight's dtype with .to; then take their matrix product with weight: "
            "(B, T, V) times (V, C) gives (B, T, C).",
            "Without num_classes, F.one_hot makes only as many columns as the largest id plus one; and its output is "
            "int64, which a matrix product with float weights refuses.",
        ),
        "my_embed_last": (
            "embeddings takes a batch (B, T) of at most block_size ids; here you have one 1-D sequence that may be "
            "longer, so keep its end and make it a batch of one.",
            "Slice the last embeddings.config.block_size ids with a negative start (a shorter sequence then keeps all "
            "its ids), add a batch dimension in front (indexing with None, or unsqueeze(0)), and call embeddings on "
            "the (1, T) result.",
        ),
    }
)
