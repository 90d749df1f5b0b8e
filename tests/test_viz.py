from io import BytesIO

import matplotlib
import matplotlib.image

matplotlib.use("Agg")  # headless: tests never open a window

import matplotlib.pyplot as plt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from tinytorch.config import GPTConfig
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import GPT
from tinytorch.viz import ALL_HEADS, AttentionExplorer, attention_maps, plot_head, plot_layer

TEXT = "to be or not to be"
TOKENIZER = CharTokenizer.from_text(TEXT + "\n")
PNG = b"\x89PNG"


def make_model(seed: int = 0, dropout: float = 0.0) -> GPT:
    """A small seeded GPT over TOKENIZER's characters, block_size 16."""
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=dropout)
    return GPT(config)


def ids(text: str) -> torch.Tensor:
    return torch.tensor([TOKENIZER.encode(text)])  # (1, T)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_maps_leave_the_model_on_its_fast_path_with_nothing_kept():
    model = make_model().eval()
    idx = ids(TEXT[:16])
    with torch.no_grad():
        before = model(idx)
        attention_maps(model, idx)
        assert_close(model(idx), before)
    assert all(not block.attn.keep_weights and block.attn.weights is None for block in model.blocks)


def test_maps_are_the_weights_of_the_explicit_path_that_gives_the_models_logits():
    model = make_model().eval()
    idx = ids(TEXT[:16])
    maps = attention_maps(model, idx)
    with torch.no_grad():
        fast = model(idx)
        for block in model.blocks:
            block.attn.keep_weights = True
        explicit = model(idx)
    assert_close(explicit, fast)
    assert_close(torch.stack([block.attn.weights[0] for block in model.blocks]), maps)


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 16), seed=st.integers(0, 3))
def test_maps_have_one_row_per_query_summing_to_one_with_the_future_masked(T, seed):
    idx = torch.randint(0, TOKENIZER.vocab_size, (1, T), generator=torch.Generator().manual_seed(seed))
    maps = attention_maps(make_model(seed), idx)
    assert maps.shape == (2, 2, T, T)
    assert_close(maps.sum(dim=-1), torch.ones(2, 2, T))
    assert (maps.triu(diagonal=1) == 0).all()


def test_maps_ignore_dropout_and_keep_the_training_mode():
    model = make_model(dropout=0.5).train()
    first, second = attention_maps(model, ids("to be")), attention_maps(model, ids("to be"))
    assert_close(first, second)  # eval mode inside: no random dropout
    assert model.training


def test_maps_reject_a_batch_and_a_too_long_text():
    model = make_model()
    with pytest.raises(ValueError, match=r"\(1, T\)"):
        attention_maps(model, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="block_size is 16"):
        attention_maps(model, torch.zeros(1, 17, dtype=torch.long))


def test_plot_head_labels_characters_visibly_and_frames_the_query_row():
    text = "a b\nc"
    weights = torch.tril(torch.ones(5, 5))
    fig = plot_head(weights / weights.sum(dim=1, keepdim=True), text, query=3)
    ax = fig.axes[0]
    labels = [tick.get_text() for tick in ax.get_xticklabels()]
    assert labels == ["a", "␣", "b", "⏎", "c"]
    assert [tick.get_text() for tick in ax.get_yticklabels()] == labels
    assert fig.axes[1].get_ylabel() == "attention weight"  # the colorbar
    assert "position 3" in ax.get_title()
    (frame,) = ax.patches
    assert frame.get_xy() == (-0.5, 2.5) and frame.get_height() == 1 and frame.get_width() == 5


def test_plot_head_rejects_mismatched_shapes_and_queries():
    with pytest.raises(ValueError, match=r"expected \(3, 3\)"):
        plot_head(torch.ones(4, 4), "abc")
    with pytest.raises(ValueError, match="query"):
        plot_head(torch.eye(3), "abc", query=3)


def test_plot_layer_draws_one_titled_heatmap_per_head():
    maps = attention_maps(make_model(), ids(TEXT[:8]))
    fig = plot_layer(maps[0], TEXT[:8])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["head 0", "head 1"]
    assert any(ax.get_ylabel() == "attention weight" for ax in fig.axes)
    with pytest.raises(ValueError, match="n_head"):
        plot_layer(maps[0], TEXT[:7])


def test_render_draws_a_different_png_for_each_view_without_leaking_figures():
    explorer = AttentionExplorer(make_model(), TOKENIZER, TEXT)
    before = plt.get_fignums()
    views = [
        explorer.render(),
        explorer.render(layer=1),
        explorer.render(head=1),
        explorer.render(query=2),
        explorer.render(head=ALL_HEADS),
        explorer.render(text="not to be"),
    ]
    assert all(view.startswith(PNG) for view in views)
    assert len(set(views)) == len(views)
    assert plt.get_fignums() == before
    assert explorer.image.value == views[0]


def lower_half(png: bytes):
    """The pixels of the lower half of a rendered view: heatmap cells, far from the title."""
    pixels = matplotlib.image.imread(BytesIO(png))
    return pixels[pixels.shape[0] // 2 :]


def test_each_head_view_shows_that_heads_weights():
    model, text = make_model(), TEXT[-16:]
    explorer = AttentionExplorer(model, TOKENIZER, text)
    maps = attention_maps(model, ids(text))
    halves = []
    for layer, head in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        png = explorer.render(layer=layer, head=head)
        drawn = explorer._head_figure(text).axes[0].images[0].get_array()
        assert_close(torch.as_tensor(drawn), maps[layer, head])
        fresh = AttentionExplorer(model, TOKENIZER, text).render(layer=layer, head=head)
        assert (lower_half(png) == lower_half(fresh)).all(), "a view depends on the views drawn before it"
        halves.append(lower_half(png))
    assert all((a != b).any() for i, a in enumerate(halves) for b in halves[i + 1 :]), "two heads drew the same cells"


def test_changing_a_control_redraws_the_image_in_place():
    explorer = AttentionExplorer(make_model(), TOKENIZER, TEXT)
    seen = [explorer.image.value]
    for control, value in [(explorer.layer, 1), (explorer.head, 1), (explorer.query, 3), (explorer.head, ALL_HEADS)]:
        control.value = value
        assert explorer.image.value not in seen, f"{control.description} did not redraw"
        seen.append(explorer.image.value)
    assert explorer.query.disabled  # the query row means nothing in the all-heads view
    explorer.head.value = 0
    assert not explorer.query.disabled


def test_a_new_text_moves_the_slider_to_its_last_character():
    explorer = AttentionExplorer(make_model(), TOKENIZER, TEXT)
    explorer.text.value = "be"
    assert (explorer.query.max, explorer.query.value) == (1, 1)
    assert explorer.image.value == explorer.render(text="be", query=1)


def test_unknown_characters_show_a_message_instead_of_crashing():
    explorer = AttentionExplorer(make_model(), TOKENIZER, TEXT)
    image = explorer.image.value
    explorer.text.value = "to be!"
    assert "'!'" in explorer.message.value and "vocabulary" in explorer.message.value
    assert explorer.image.value == image  # the last good picture stays
    explorer.text.value = "to be"
    assert explorer.message.value == ""
    with pytest.raises(ValueError, match="vocabulary"):
        explorer.render(text="to be!")


def test_an_empty_text_shows_a_message():
    explorer = AttentionExplorer(make_model(), TOKENIZER, TEXT)
    explorer.text.value = ""
    assert "empty" in explorer.message.value


def test_long_texts_keep_their_last_block_size_characters():
    explorer = AttentionExplorer(make_model(), TOKENIZER, "be " * 10)  # 30 characters, block_size 16
    assert explorer.text.value == ("be " * 10)[-16:]
    explorer.text.value = "to be or not to be to be"  # 24 characters
    assert explorer.query.max == 15
    assert "last 16" in explorer.message.value
    assert explorer.image.value == explorer.render(text=explorer.text.value[-16:])
