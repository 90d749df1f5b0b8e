import base64
import html

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
from tinytorch.viz import (
    BARS,
    MAX,
    MEAN,
    WINDOW,
    AttentionExplorer,
    SamplingPlayground,
    attention_maps,
    plot_head,
    plot_layer,
)

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


def explorer_of(text: str = TEXT, block_size: int = 16) -> AttentionExplorer:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=32)
    return AttentionExplorer(GPT(config), TOKENIZER, text)


def test_render_gives_the_query_row_and_a_window_of_the_map():
    explorer = explorer_of(TEXT[:16])
    maps = attention_maps(explorer.model, ids(TEXT[:16]))
    view = explorer.render(layer=1, head=0, query=9)
    assert view["chars"] == list(TEXT[:16]) and view["query"] == 9 and view["start"] == 0
    assert_close(torch.tensor(view["row"]), maps[1, 0, 9])
    assert_close(torch.tensor(view["window"]), maps[1, 0])  # 16 characters: the window is the whole map
    assert "layer 1, head 0" in view["caption"] and "position 9" in view["caption"]
    assert abs(sum(view["row"]) - 1) < 1e-5 and view["row"][10:] == [0.0] * 6  # nothing on the future


def test_all_heads_are_their_mean_or_their_max():
    explorer = explorer_of(TEXT[:16])
    maps = attention_maps(explorer.model, ids(TEXT[:16]))
    assert_close(explorer.weights(layer=1, head=MEAN), maps[1].mean(dim=0))
    assert_close(explorer.weights(layer=1, head=MAX), maps[1].amax(dim=0))
    views = [explorer.render(layer=layer, head=head) for layer in (0, 1) for head in (0, 1, MEAN, MAX)]
    assert len({str(view["window"]) for view in views}) == len(views), "two choices drew the same map"


@pytest.mark.parametrize(("query", "start"), [(5, 0), (30, 6), (59, 16)])
def test_the_heatmap_window_holds_at_most_48_characters_around_the_query(query, start):
    text = (TEXT + " ") * 4  # 76 characters, of which a model of block_size 64 reads the last 64
    explorer = explorer_of(text, block_size=64)
    view = explorer.render(query=query)
    assert len(view["chars"]) == 64 and len(view["window"]) == WINDOW == 48
    assert view["start"] == start and view["start"] <= query < view["start"] + WINDOW
    full = explorer.weights()  # (64, 64)
    assert_close(torch.tensor(view["window"]), full[start : start + WINDOW, start : start + WINDOW])


def test_changing_a_control_updates_the_view_in_place():
    explorer = explorer_of()
    seen = [explorer.view.row]
    for control, value in [(explorer.layer, 1), (explorer.head, 1), (explorer.query, 3), (explorer.head, MAX)]:
        control.value = value
        assert explorer.view.row not in seen, f"{control.description} did not change the view"
        seen.append(explorer.view.row)
        assert explorer.view.row == explorer.render()["row"]


def test_a_click_in_the_view_chooses_the_query():
    explorer = explorer_of()
    explorer.view.query = 4  # what the browser sets when the learner clicks the fifth character
    assert explorer.query.value == 4 and explorer.view.query == 4
    assert explorer.view.row == explorer.render(query=4)["row"]


def test_a_new_text_moves_the_slider_to_its_last_character_and_keeps_newlines():
    explorer = explorer_of()
    explorer.text.value = "be\nbe"
    assert (explorer.query.max, explorer.query.value) == (4, 4)
    assert explorer.view.chars == list("be\nbe")


def test_unknown_characters_show_a_message_instead_of_crashing():
    explorer = explorer_of()
    shown = explorer.view.chars
    explorer.text.value = "to be!"
    assert "'!'" in html.unescape(explorer.message.value) and "vocabulary" in explorer.message.value
    assert explorer.view.chars == shown  # the last good view stays
    explorer.text.value = "to be"
    assert explorer.message.value == ""
    with pytest.raises(ValueError, match="vocabulary"):
        explorer.render(text="to be!")


def test_an_empty_text_shows_a_message():
    explorer = explorer_of()
    explorer.text.value = ""
    assert "empty" in explorer.message.value


def test_long_texts_show_their_last_block_size_characters_and_say_so():
    explorer = explorer_of("be " * 10)  # 30 characters, block_size 16
    assert explorer.text.value == "be " * 10  # the learner's text is kept whole
    assert explorer.view.chars == list(("be " * 10)[-16:]) and "last 16 characters" in explorer.message.value
    explorer.text.value = "to be or not to be to be"  # 24 characters
    assert explorer.query.max == 15 and "last 16 characters" in explorer.message.value


def test_the_static_picture_is_the_window_with_readable_labels_and_leaks_no_figure():
    explorer = explorer_of(TEXT[:16])
    before = plt.get_fignums()
    bundle = explorer._repr_mimebundle_()
    assert plt.get_fignums() == before
    assert base64.b64decode(bundle["image/png"]).startswith(PNG)
    assert "application/vnd.jupyter.widget-view+json" in bundle and bundle["text/plain"].startswith("AttentionExplorer")
    fig = explorer.figure()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["t", "o", "␣", "b", "e", "␣", "o", "r"] + list(
        "␣not␣to␣".replace(" ", "␣")
    )
    assert min(t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()) >= 9
    plt.close(fig)


# the sampling playground


def playground_of(prompt: str = TEXT, seed: int = 0) -> SamplingPlayground:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32)
    model = GPT(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(20)  # a sharper distribution than a fresh model's, like a trained one
    return SamplingPlayground(model, TOKENIZER, prompt, seed=seed)


def test_the_chart_shows_the_model_before_and_sampling_after_the_knobs():
    playground = playground_of()
    before, after = playground.distribution()
    assert_close(before, after)  # every knob at its neutral value
    assert abs(before.sum().item() - 1) < 1e-5
    view = playground.render()
    assert len(view["labels"]) == min(BARS, TOKENIZER.vocab_size) and all(view["kept"])
    assert view["before"] == sorted(view["before"], reverse=True)  # the most likely first


@pytest.mark.parametrize(("knob", "value"), [("temperature", 0.5), ("top_k", 2), ("top_p", 0.3), ("penalty", 1.8)])
def test_every_knob_changes_what_sampling_draws_from_and_not_the_model(knob, value):
    playground = playground_of()
    base = playground.render()
    getattr(playground, knob).value = value
    view = playground.view
    assert view.before == base["before"] and view.after != base["after"], knob
    if knob == "top_k":
        assert sum(view.kept) == 2


def test_sampling_appends_to_the_prompt_and_a_seed_repeats_it():
    first, second = playground_of(seed=3), playground_of(seed=3)
    drawn = first.sample(5)
    assert len(drawn) == 5 and first.prompt.value == TEXT + drawn
    assert second.sample(5) == drawn
    second.seed.value = 3  # the same seed again: the same draws from the start
    second.prompt.value = TEXT
    assert second.sample(5) == drawn


def test_a_line_stops_at_its_newline():
    playground = playground_of()
    with torch.no_grad():  # make the newline the only likely character
        playground.model.lm_head.weight.zero_()
        playground.model.ln_f.bias.zero_()
        playground.model.lm_head.weight[TOKENIZER.stoi["\n"]] = playground.model.ln_f.weight.abs() + 1
    assert playground.sample(200, stop="\n").endswith("\n")


def test_a_prompt_it_cannot_read_shows_a_message():
    playground = playground_of()
    playground.prompt.value = "to be!"
    assert "vocabulary" in playground.message.value
    playground.prompt.value = ""
    assert "empty" in playground.message.value


def test_a_prompt_it_cannot_read_clears_the_chart_instead_of_keeping_the_last_prompts():
    playground = playground_of()
    assert playground.view.labels, "the first prompt has a chart"
    playground.prompt.value = "to be!"  # '!' is not in the vocabulary
    view = playground.view
    assert (view.labels, view.before, view.after, view.kept) == ([], [], [], []), (
        "the last prompt's chart is still shown"
    )
    assert "no chart" in view.caption and "message" in view.caption
    playground.temperature.value = 0.5  # a knob moved meanwhile: still no chart
    assert view.labels == [] and "vocabulary" in playground.message.value
    bundle = playground._repr_mimebundle_()  # the saved picture of an empty chart
    assert base64.b64decode(bundle["image/png"]).startswith(PNG) and "no chart" in bundle["text/plain"]
    playground.prompt.value = "to be"  # readable again: its chart and no message
    assert view.labels == playground.render()["labels"] and view.labels and playground.message.value == ""


def test_attention_maps_of_a_model_without_the_switch_is_a_type_error():
    with pytest.raises(TypeError, match="no keep_weights switch"):
        attention_maps(torch.nn.Sequential(torch.nn.Embedding(5, 4)), torch.zeros(1, 3, dtype=torch.long))
