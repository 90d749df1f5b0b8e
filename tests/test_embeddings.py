import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinytorch.config import GPTConfig
from tinytorch.embeddings import CharTokenizer, Embeddings, check_token_ids

TEXT = "But, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"
TOKENIZER = CharTokenizer.from_text(TEXT)
CONFIG = GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture
def embeddings():
    torch.manual_seed(0)
    return Embeddings(CONFIG).eval()


# --- CharTokenizer ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.text(alphabet=TOKENIZER.chars, max_size=200))
def test_decode_of_encode_gives_the_text_back(text):
    ids = TOKENIZER.encode(text)
    assert len(ids) == len(text)
    assert all(0 <= i < TOKENIZER.vocab_size for i in ids)
    assert TOKENIZER.decode(ids) == text


def test_vocabulary_is_the_sorted_set_of_characters():
    tokenizer = CharTokenizer.from_text("banana bread")
    assert tokenizer.chars == [" ", "a", "b", "d", "e", "n", "r"]
    assert tokenizer.vocab_size == 7
    assert tokenizer.encode("bad") == [2, 1, 3]


def test_same_characters_in_any_order_give_the_same_vocabulary():
    assert CharTokenizer.from_text("night").chars == CharTokenizer.from_text("thing").chars


def test_decode_accepts_a_1d_tensor():
    ids = TOKENIZER.encode("Juliet is the sun.")
    assert TOKENIZER.decode(torch.tensor(ids)) == "Juliet is the sun."


def test_decode_rejects_a_2d_tensor():
    with pytest.raises(ValueError, match=r"1-D.*\(1, 3\)"):
        TOKENIZER.decode(torch.zeros(1, 3, dtype=torch.long))


def test_unknown_character_error_names_character_and_position():
    with pytest.raises(ValueError, match=r"character 'R' at position 8 .*vocabulary of \d+ characters"):
        TOKENIZER.encode("Juliet, Romeo")


@pytest.mark.parametrize("bad_id", [-1, TOKENIZER.vocab_size, 1000])
def test_decode_rejects_ids_outside_the_vocabulary(bad_id):
    with pytest.raises(ValueError, match=rf"token id {bad_id} is outside \[0, {TOKENIZER.vocab_size}\)"):
        TOKENIZER.decode([0, bad_id])


def test_non_ascii_characters_survive_the_dict_round_trip_through_json():
    tokenizer = CharTokenizer.from_text("wherefore—art thou é")
    text = json.dumps(tokenizer.to_dict(), ensure_ascii=False)
    assert CharTokenizer.from_dict(json.loads(text)).chars == tokenizer.chars


def test_from_dict_without_chars_is_a_value_error():
    with pytest.raises(ValueError, match="'chars' list"):
        CharTokenizer.from_dict({"vocab": "abc"})


def test_dict_round_trip():
    assert CharTokenizer.from_dict(json.loads(json.dumps(TOKENIZER.to_dict()))).chars == TOKENIZER.chars


def test_duplicate_characters_are_rejected():
    with pytest.raises(ValueError, match="twice"):
        CharTokenizer(["a", "b", "a"])


def test_empty_vocabulary_is_rejected():
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer([])


def test_multi_character_entries_are_rejected():
    with pytest.raises(ValueError, match="single characters"):
        CharTokenizer(["a", "bc"])


# --- Embeddings ------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(B=st.integers(1, 4), T=st.integers(1, CONFIG.block_size))
def test_output_shape_for_any_batch_and_length_up_to_block_size(B, T):
    torch.manual_seed(0)
    module = Embeddings(CONFIG)
    idx = torch.randint(0, CONFIG.vocab_size, (B, T))
    assert module(idx).shape == (B, T, CONFIG.n_embd)


def test_output_is_token_row_plus_position_row(embeddings):
    idx = torch.tensor([TOKENIZER.encode("Juliet"), TOKENIZER.encode("is the")])
    expected = embeddings.wte.weight[idx] + embeddings.wpe.weight[: idx.size(1)]
    torch.testing.assert_close(embeddings(idx), expected)


@pytest.mark.parametrize("start_pos", [0, 1, 7, CONFIG.block_size - 3])
def test_start_pos_shifts_the_positions(embeddings, start_pos):
    idx = torch.tensor([[3, 1, 4]])
    expected = embeddings.wte(idx) + embeddings.wpe.weight[start_pos : start_pos + 3]
    torch.testing.assert_close(embeddings(idx, start_pos=start_pos), expected)


def test_last_token_at_its_position_equals_the_last_row_of_the_full_sequence(embeddings):
    idx = torch.randint(0, CONFIG.vocab_size, (2, CONFIG.block_size))
    full = embeddings(idx)
    torch.testing.assert_close(embeddings(idx[:, -1:], start_pos=CONFIG.block_size - 1), full[:, -1:])


def test_same_token_at_different_positions_gets_different_vectors(embeddings):
    x = embeddings(torch.full((1, 4), 5))
    assert not torch.allclose(x[0, 0], x[0, 3])


def test_parameters_are_one_row_per_token_and_per_position():
    n_params = sum(p.numel() for p in Embeddings(CONFIG).parameters())
    assert n_params == (CONFIG.vocab_size + CONFIG.block_size) * CONFIG.n_embd


def test_dropout_is_inactive_in_eval_mode():
    torch.manual_seed(0)
    module = Embeddings(GPTConfig(vocab_size=CONFIG.vocab_size, block_size=16, n_embd=32, dropout=0.5))
    idx = torch.randint(0, CONFIG.vocab_size, (2, 16))
    module.eval()
    expected = module.wte(idx) + module.wpe(torch.arange(16))
    torch.testing.assert_close(module(idx), expected)
    torch.testing.assert_close(module(idx), module(idx))
    module.train()
    assert (module(idx) == 0).any()  # sanity: the same module does drop in training mode


# --- check_token_ids -------------------------------------------------------------------------


def test_valid_ids_pass():
    check_token_ids(torch.zeros(2, CONFIG.block_size, dtype=torch.long), CONFIG)
    check_token_ids(torch.full((1, 1), CONFIG.vocab_size - 1, dtype=torch.int32), CONFIG)


def test_id_too_big_names_the_id_its_position_and_vocab_size(embeddings):
    idx = torch.zeros(2, 5, dtype=torch.long)
    idx[1, 3] = 99
    with pytest.raises(ValueError, match=rf"token id 99 at position \(1, 3\) is outside \[0, {CONFIG.vocab_size}\)"):
        embeddings(idx)


def test_id_equal_to_vocab_size_is_rejected():
    idx = torch.tensor([[0, CONFIG.vocab_size]])
    with pytest.raises(ValueError, match=f"token id {CONFIG.vocab_size} .*vocab_size={CONFIG.vocab_size}"):
        check_token_ids(idx, CONFIG)


def test_negative_id_is_rejected(embeddings):
    with pytest.raises(ValueError, match=r"token id -1 at position \(0, 2\)"):
        embeddings(torch.tensor([[0, 1, -1]]))


def test_too_long_sequence_names_length_and_block_size(embeddings):
    idx = torch.zeros(1, CONFIG.block_size + 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"sequence has 20 tokens but block_size is 16; crop with idx\[:, -16:\]"):
        embeddings(idx)


def test_start_pos_plus_length_beyond_block_size_is_rejected(embeddings):
    with pytest.raises(ValueError, match="15 cached \\+ 2 new tokens exceed block_size 16"):
        embeddings(torch.zeros(1, 2, dtype=torch.long), start_pos=15)


def test_negative_start_pos_is_rejected(embeddings):
    with pytest.raises(ValueError, match="start_pos must be >= 0, got -1"):
        embeddings(torch.zeros(1, 2, dtype=torch.long), start_pos=-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
def test_non_integer_ids_are_a_type_error(embeddings, dtype):
    with pytest.raises(TypeError, match="integer token ids.*idx.long"):
        embeddings(torch.zeros(1, 3, dtype=dtype))


def test_a_list_is_a_type_error():
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_token_ids([[1, 2, 3]], CONFIG)


def test_1d_input_suggests_adding_a_batch_dimension(embeddings):
    with pytest.raises(ValueError, match=r"shape \(B, T\), got \(3,\); add a batch dimension with idx\[None\]"):
        embeddings(torch.tensor([1, 2, 3]))


def test_3d_input_is_rejected(embeddings):
    with pytest.raises(ValueError, match=r"got \(1, 2, 3\); reshape"):
        embeddings(torch.zeros(1, 2, 3, dtype=torch.long))


@pytest.mark.parametrize("shape", [(1, 0), (0, 3)])
def test_empty_input_is_rejected(embeddings, shape):
    with pytest.raises(ValueError, match="no tokens"):
        embeddings(torch.zeros(shape, dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.uint8])
def test_small_integer_ids_are_a_type_error_naming_the_fix(dtype):
    config = GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8)
    with pytest.raises(TypeError, match=f"dtype {dtype}.*idx.long()"):
        Embeddings(config)(torch.zeros(1, 4, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_int32_and_int64_ids_are_embedded(dtype):
    config = GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=8)
    assert Embeddings(config)(torch.arange(4, dtype=dtype)[None]).shape == (1, 4, 8)
