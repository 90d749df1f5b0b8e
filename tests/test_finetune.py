"""Chapter 12's LoRA: it starts as the base model, trains only its adapters, merges exactly, gives peft's outputs."""

import copy
from collections import Counter

import pytest
import torch
from torch import nn

from tinytorch.config import GPTConfig
from tinytorch.data import VAL_PLAYS, load_plays
from tinytorch.finetune import (
    GENRES,
    BagOfCharacters,
    GenreClassifier,
    LoRALinear,
    add_lora,
    fit_classifier,
    genre_accuracy,
    last_hidden,
    merge_lora,
    passages,
    play_genres,
    predict,
    split_plays,
    trainable_parameters,
)
from tinytorch.gpt import GPT

SMALL = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every LoRA B random values, as training would (at B = 0 an adapter changes nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_B.weight.copy_(torch.randn(module.lora_B.weight.shape, generator=g) * 0.1)
    return model


def peft_twin(base: nn.Module, ours: nn.Module, r: int, alpha: float, targets: list[str]) -> nn.Module:
    """peft's LoRA on a copy of `base`, with our A and B copied in."""
    peft = pytest.importorskip("peft")
    theirs = peft.get_peft_model(
        copy.deepcopy(base), peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0)
    )
    with torch.no_grad():
        for name, module in ours.named_modules():
            if isinstance(module, LoRALinear):
                layer = theirs.base_model.model.get_submodule(name)
                layer.lora_A["default"].weight.copy_(module.lora_A.weight)
                layer.lora_B["default"].weight.copy_(module.lora_B.weight)
    return theirs


@pytest.mark.parametrize(("r", "alpha"), [(1, 1), (4, 8), (8, 32)])
def test_adapted_gpt_gives_pefts_logits(r, alpha):
    torch.manual_seed(0)
    base = GPT(SMALL).eval()
    ours = trained_like(add_lora(copy.deepcopy(base), r, alpha))
    theirs = peft_twin(base, ours, r, alpha, ["qkv", "proj", "fc"])
    idx = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), theirs(idx), atol=1e-6, rtol=1e-6)
    assert trainable_parameters(ours) == theirs.get_nb_trainable_parameters()[0]


def test_adapted_layer_gives_pefts_outputs():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(12, 20))
    ours = copy.deepcopy(base)
    ours[0] = LoRALinear(ours[0], r=3, alpha=6)
    trained_like(ours)
    theirs = peft_twin(base, ours, 3, 6, ["0"])
    x = torch.randn(4, 12)
    torch.testing.assert_close(ours(x), theirs(x))


def test_adapted_model_starts_as_the_base_model():
    torch.manual_seed(0)
    base = GPT(SMALL).eval()
    adapted = add_lora(copy.deepcopy(base), r=4, alpha=8).eval()
    idx = torch.randint(0, 50, (3, 16))
    with torch.no_grad():
        torch.testing.assert_close(adapted(idx), base(idx), atol=0, rtol=0)


def test_merged_equals_unmerged():
    torch.manual_seed(0)
    adapted = trained_like(add_lora(GPT(SMALL), r=4, alpha=8)).eval()
    merged = merge_lora(copy.deepcopy(adapted)).eval()
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert type(merged.blocks[0].attn.qkv) is nn.Linear
    idx = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(merged(idx), adapted(idx), atol=1e-5, rtol=1e-5)


def test_training_moves_only_the_adapters():
    torch.manual_seed(0)
    model = add_lora(GPT(SMALL), r=2, alpha=4)
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    idx = torch.randint(0, 50, (2, 16))
    for _ in range(3):
        loss = nn.functional.cross_entropy(model(idx).view(-1, 50), idx.view(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]) and p.grad is None, name
    assert all("lora_" in name for name, p in model.named_parameters() if p.requires_grad)


def test_trainable_count_is_r_times_in_plus_out_per_layer():
    model = add_lora(GPT(SMALL), r=4, alpha=8)
    C = SMALL.n_embd
    per_block = 4 * ((C + 3 * C) + (C + C) + (C + 4 * C) + (4 * C + C))  # qkv, attn proj, fc, mlp proj
    assert trainable_parameters(model) == SMALL.n_layer * per_block


def test_lora_says_what_is_wrong():
    with pytest.raises(ValueError, match="r must be a whole number from 1 to 8"):
        LoRALinear(nn.Linear(8, 16), r=9, alpha=1)
    with pytest.raises(ValueError, match="r must be"):
        LoRALinear(nn.Linear(8, 16), r=0, alpha=1)
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1), r=1, alpha=1)
    with pytest.raises(ValueError, match="no nn.Linear named"):
        add_lora(GPT(SMALL), r=2, alpha=4, targets=("q_proj",))


def test_lora_layer_freezes_its_base_and_trains_a_and_b():
    layer = LoRALinear(nn.Linear(8, 16), r=2, alpha=4)
    assert [name for name, p in layer.named_parameters() if p.requires_grad] == ["lora_A.weight", "lora_B.weight"]
    assert torch.equal(layer.lora_B.weight, torch.zeros(16, 2)) and layer.lora_A.weight.abs().sum() > 0
    assert layer.scaling == 2.0


# ------------------------------------------------------------------ the genre classifier


def test_every_play_has_its_folders_genre_and_the_held_out_plays_one_of_four():
    genres = play_genres()
    assert len(genres) == 38
    assert Counter(genres.values()) == {
        "comedies": 8,
        "histories": 11,
        "problems": 5,
        "roman": 4,
        "romances": 4,
        "tragedies": 6,
    }
    assert sorted(genres[name] for name in VAL_PLAYS) == list(GENRES)  # one held-out play per genre of GENRES


def test_no_play_is_both_trained_on_and_held_out():
    train, heldout = split_plays()
    assert not set(train) & set(heldout)
    assert set(heldout) == set(VAL_PLAYS) and len(train) == 25  # 29 plays of the four genres, less the held-out four
    assert set(train.values()) == set(heldout.values()) == set(GENRES)
    assert all(play_genres()[name] == genre for name, genre in {**train, **heldout}.items())


def numbered(n_passages: int, length: int, tag: str) -> str:
    """A play whose passages of `length` characters are all different: tag, then a running number."""
    return "".join(f"{tag}{i:0{length - len(tag)}d}" for i in range(n_passages))


TOY = {  # 3 comedies, 1 of each other genre; every passage of 8 characters different
    "c1": numbered(20, 8, "c1-"),
    "c2": numbered(20, 8, "c2-"),
    "c3": numbered(20, 8, "c3-"),
    "h1": numbered(30, 8, "h1-"),
    "r1": numbered(30, 8, "r1-"),
    "t1": numbered(30, 8, "t1-"),
}
TOY_GENRES = {"c1": "comedies", "c2": "comedies", "c3": "comedies", "h1": "histories", "r1": "romances"}
TOY_GENRES["t1"] = "tragedies"


def test_passages_are_balanced_per_genre_shared_among_its_plays_and_never_overlap():
    texts, labels = passages(TOY, TOY_GENRES, per_genre=10, length=8, seed=3)
    assert labels.tolist() == [0] * 10 + [1] * 10 + [2] * 10 + [3] * 10
    assert all(len(text) == 8 for text in texts) and len(set(texts)) == len(texts)  # no passage twice
    assert Counter(text[:2] for text in texts[:10]) == {"c1": 4, "c2": 3, "c3": 3}  # the remainder to the first play
    for text, label in zip(texts, labels.tolist(), strict=True):
        play = text[:2]
        assert GENRES[label] == TOY_GENRES[play] and TOY[play].index(text) % 8 == 0  # whole passages, none overlapping
    again, _ = passages(TOY, TOY_GENRES, per_genre=10, length=8, seed=3)
    other, _ = passages(TOY, TOY_GENRES, per_genre=10, length=8, seed=4)
    assert again == texts and other != texts


def test_passages_of_the_course_split_come_from_their_own_side():
    plays = load_plays()
    train, heldout = split_plays()
    train_texts, train_labels = passages(plays, train, per_genre=20)
    heldout_texts, heldout_labels = passages(plays, heldout, per_genre=5, seed=1)
    assert train_labels.bincount().tolist() == [20] * 4 and heldout_labels.bincount().tolist() == [5] * 4
    assert all(len(text) == 128 for text in train_texts + heldout_texts)
    for text, label in zip(heldout_texts, heldout_labels.tolist(), strict=True):
        [play] = [name for name, genre in heldout.items() if genre == GENRES[label]]
        assert text in plays[play]


def test_passages_say_what_is_wrong():
    with pytest.raises(ValueError, match="c1 has 20 passages of 8 characters, not 34: ask for fewer"):
        passages(TOY, TOY_GENRES, per_genre=100, length=8)
    with pytest.raises(ValueError, match="no play of 'tragedies'"):
        passages(TOY, {name: g for name, g in TOY_GENRES.items() if g != "tragedies"}, per_genre=2, length=8)
    with pytest.raises(ValueError, match="'problems' is not a genre of GENRES"):
        passages(TOY, {**TOY_GENRES, "c1": "problems"}, per_genre=2, length=8)
    with pytest.raises(ValueError, match="'hamlet' is not a genre of GENRES .* or not a play of plays"):
        passages(TOY, {**TOY_GENRES, "hamlet": "tragedies"}, per_genre=2, length=8)
    with pytest.raises(ValueError, match="per_genre must be an int >= 1, got 0"):
        passages(TOY, TOY_GENRES, per_genre=0)
    with pytest.raises(TypeError, match="length must be an int"):
        passages(TOY, TOY_GENRES, per_genre=2, length=8.0)


def test_last_hidden_is_the_last_positions_vector_that_the_output_layer_reads():
    torch.manual_seed(0)
    model = GPT(SMALL).eval()
    idx = torch.randint(0, 50, (3, 16))
    with torch.no_grad():
        hidden = last_hidden(model, idx)
        assert hidden.shape == (3, SMALL.n_embd)
        torch.testing.assert_close(model.lm_head(hidden), model(idx)[:, -1])  # the logits of the last position
        changed = idx.clone()
        changed[:, 0] = (changed[:, 0] + 1) % 50
        assert not torch.allclose(last_hidden(model, changed), hidden)  # it has read the first token too


def test_last_hidden_says_what_is_wrong():
    model = GPT(SMALL)
    with pytest.raises(TypeError, match="last_hidden reads chapter 05's GPT"):
        last_hidden(nn.Linear(4, 4), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"idx must have shape \(B, T\), got \(16,\)"):
        last_hidden(model, torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match="sequence has 17 tokens but block_size is 16"):
        last_hidden(model, torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(TypeError, match="integer token ids"):
        last_hidden(model, torch.zeros(1, 4))


def test_the_classifier_trains_its_head_and_what_the_model_leaves_trainable():
    full = GenreClassifier(GPT(SMALL))
    assert full(torch.zeros(2, 16, dtype=torch.long)).shape == (2, len(GENRES))
    head = SMALL.n_embd * len(GENRES) + len(GENRES)
    assert trainable_parameters(full) == sum(p.numel() for p in GPT(SMALL).parameters()) + head
    adapted = GenreClassifier(add_lora(GPT(SMALL), r=2, alpha=4))
    assert trainable_parameters(adapted) == trainable_parameters(add_lora(GPT(SMALL), r=2, alpha=4)) + head
    assert trainable_parameters(GenreClassifier(GPT(SMALL).requires_grad_(False))) == head  # a linear probe
    with pytest.raises(ValueError, match="n_classes must be an int >= 2, got 1"):
        GenreClassifier(GPT(SMALL), n_classes=1)


def toy_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Passages of 16 ids, each genre's ids from its own range of the vocabulary: trivially separable."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(GENRES)
    ids = torch.randint(0, 12, (n, 16), generator=g) + 12 * labels[:, None]  # genre k: ids 12k to 12k + 11
    return ids, labels


@pytest.mark.parametrize("kind", ["full", "lora", "bag"])
def test_a_classifier_learns_a_trivially_separable_task(kind):
    train_ids, train_labels = toy_task(64, seed=0)
    test_ids, test_labels = toy_task(32, seed=1)
    torch.manual_seed(0)
    classifier = {
        "full": lambda: GenreClassifier(GPT(SMALL)),
        "lora": lambda: GenreClassifier(add_lora(GPT(SMALL), r=2, alpha=4)),
        "bag": lambda: BagOfCharacters(SMALL.vocab_size),
    }[kind]()
    before = genre_accuracy(classifier, test_ids, test_labels)
    losses = fit_classifier(
        classifier, train_ids, train_labels, steps=60, batch_size=16, lr=1e-2 if kind == "bag" else 3e-3
    )
    assert len(losses) == 60 and losses[-1] < losses[0]
    after = genre_accuracy(classifier, test_ids, test_labels)
    assert after >= 0.9 and before < 0.5  # chance is 0.25
    assert (predict(classifier, test_ids) == test_labels).float().mean().item() == after


def test_a_linear_probe_trains_on_vectors_computed_once():
    torch.manual_seed(0)
    model = GPT(SMALL).eval()
    train_ids, train_labels = toy_task(64, seed=0)
    with torch.no_grad():
        features = last_hidden(model, train_ids)  # (N, C): the frozen model's, once
    probe = nn.Linear(SMALL.n_embd, len(GENRES))
    fit_classifier(probe, features, train_labels, steps=200, batch_size=16, lr=1e-2)
    assert genre_accuracy(probe, features, train_labels) >= 0.9


def test_fitting_is_seeded_and_leaves_frozen_weights_alone():
    train_ids, train_labels = toy_task(32, seed=0)

    def fit(seed: int) -> tuple[list[float], nn.Module]:
        torch.manual_seed(0)
        classifier = GenreClassifier(add_lora(GPT(SMALL), r=2, alpha=4))
        return fit_classifier(classifier, train_ids, train_labels, steps=5, batch_size=8, seed=seed), classifier

    (first, classifier), (again, _), (other, _) = fit(0), fit(0), fit(1)
    assert first == again and first != other  # the seed draws the order of the batches
    torch.manual_seed(0)
    untouched = add_lora(GPT(SMALL), r=2, alpha=4)
    for (name, p), q in zip(classifier.model.named_parameters(), untouched.parameters(), strict=True):
        assert torch.equal(p, q) == ("lora_" not in name), name  # the adapters moved, nothing else


def test_fitting_and_measuring_say_what_is_wrong():
    ids, labels = toy_task(8, seed=0)
    classifier = BagOfCharacters(SMALL.vocab_size)
    with pytest.raises(ValueError, match="inputs has 8 examples and labels 7: give as many"):
        fit_classifier(classifier, ids, labels[:7], steps=1)
    with pytest.raises(TypeError, match="labels must be a 1-D tensor of class indices"):
        fit_classifier(classifier, ids, labels.float(), steps=1)
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor, got list"):
        fit_classifier(classifier, ids.tolist(), labels, steps=1)
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        fit_classifier(classifier, ids, labels, steps=0)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        fit_classifier(classifier, ids, labels, steps=1, lr=0.0)
    with pytest.raises(ValueError, match="every parameter of the classifier is frozen"):
        fit_classifier(BagOfCharacters(SMALL.vocab_size).requires_grad_(False), ids, labels, steps=1)
    with pytest.raises(ValueError, match="inputs holds no example"):
        predict(classifier, ids[:0])
    with pytest.raises(ValueError, match="inputs has 0 examples and labels 0"):
        genre_accuracy(classifier, ids[:0], labels[:0])
