"""Chapter 12's model that replies: the pairs, the template, the masked loss, the adapter file, the commands."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_cli import assert_one_line_error, cli

import tinytorch.finetune
from tinytorch.bpe import END_OF_TEXT, BPETokenizer
from tinytorch.config import GPTConfig
from tinytorch.embeddings import CharTokenizer
from tinytorch.finetune import (
    REPLY,
    REPLY_ADAPTER,
    SPEECH,
    add_lora,
    add_reply_tokens,
    encode_pair,
    fingerprint,
    fit_replies,
    load_adapter,
    masked_loss,
    pair_batch,
    read_adapter,
    reply,
    reply_loss,
    reply_pairs,
    save_adapter,
    train_new_rows,
)
from tinytorch.gpt import GPT

PLAY = """# A Play

## ACT I

### SCENE I. A street.

**ANNE**

Good morrow, sir.

**BEN**

Good morrow, Anne.
How fares your father?

**BEN**

I ask again.

**ANNE**

He fares well.

### SCENE II. A room.

**CARL**

A new scene.

**DORA**

And a reply that is far too long to keep in a pair of at most fifty characters.
"""


def header_of(path) -> dict:
    with safe_open(path, framework="pt") as f:
        return json.loads(f.metadata()["tinytorch"])


def small_bpe() -> tuple[GPT, BPETokenizer]:
    tokenizer = BPETokenizer.train("Good morrow, sir. How fares your father? " * 20, 270)
    return GPT(GPTConfig(tokenizer.vocab_size, 32, 2, 2, 16)).eval(), tokenizer


def test_pairs_are_a_speech_and_the_next_speakers_reply_in_the_same_scene():
    assert reply_pairs(PLAY) == [
        ("Good morrow, sir.", "Good morrow, Anne.\nHow fares your father?"),
        ("I ask again.", "He fares well."),  # BEN to BEN is no pair; the first scene's last speech ends its pairs
        ("A new scene.", "And a reply that is far too long to keep in a pair of at most fifty characters."),
    ]
    assert reply_pairs(PLAY, max_chars=50) == reply_pairs(PLAY)[:2]
    with pytest.raises(ValueError, match="max_chars"):
        reply_pairs(PLAY, max_chars=0)


def test_the_grown_model_reads_old_tokens_as_before_and_the_new_rows_start_at_the_mean():
    model, tokenizer = small_bpe()
    grown, grown_tokenizer = add_reply_tokens(model, tokenizer)
    V = tokenizer.vocab_size
    assert grown_tokenizer.special_tokens == {END_OF_TEXT: V - 1, SPEECH: V, REPLY: V + 1}
    assert grown.config.vocab_size == V + 2 and grown.lm_head.weight is grown.embeddings.wte.weight
    rows = grown.embeddings.wte.weight.detach()
    torch.testing.assert_close(rows[V:], model.embeddings.wte.weight.detach().mean(dim=0).expand(2, -1))
    idx = torch.tensor([tokenizer.encode("Good morrow")])
    with torch.no_grad():
        torch.testing.assert_close(grown(idx)[..., :V], model(idx))
    with pytest.raises(ValueError, match="already"):
        add_reply_tokens(grown, grown_tokenizer)
    with pytest.raises(TypeError, match="subword tokenizer"):
        add_reply_tokens(model, CharTokenizer.from_text("abc"))


def test_the_template_learns_the_reply_and_its_end_only():
    model, tokenizer = small_bpe()
    _, grown = add_reply_tokens(model, tokenizer)
    ids, learned = encode_pair(grown, "Good morrow, sir.", "How fares?")
    prompt = [grown.special_tokens[SPEECH], *grown.encode("Good morrow, sir."), grown.special_tokens[REPLY]]
    assert ids == prompt + grown.encode("How fares?") + [grown.special_tokens[END_OF_TEXT]]
    assert learned == [False] * len(prompt) + [True] * (len(ids) - len(prompt))
    with pytest.raises(ValueError, match="add_reply_tokens"):
        encode_pair(tokenizer, "a", "b")


def test_a_batch_pads_on_the_right_and_the_loss_counts_only_the_masked_positions():
    examples = [([1, 2, 3, 4, 5], [False, False, True, True, True]), ([6, 7, 8], [False, True, True])]
    idx, targets, mask = pair_batch(examples)
    assert idx.tolist() == [[1, 2, 3, 4], [6, 7, 0, 0]] and targets.tolist() == [[2, 3, 4, 5], [7, 8, 0, 0]]
    assert mask.tolist() == [[False, True, True, True], [True, True, False, False]]
    logits = torch.randn(2, 4, 10)
    expected = F.cross_entropy(logits[mask], targets[mask])  # only the 5 learned positions
    torch.testing.assert_close(masked_loss(logits, targets, mask), expected)
    with pytest.raises(ValueError, match="no pair"):
        pair_batch([])


def test_lora_fine_tuning_moves_the_adapters_and_the_templates_rows_only():
    model, tokenizer = small_bpe()
    grown, grown_tokenizer = add_reply_tokens(model, tokenizer)
    examples = [encode_pair(grown_tokenizer, "Good morrow, sir.", "How fares your father?")] * 4
    adapted = add_lora(copy.deepcopy(grown), r=2, alpha=4)
    train_new_rows(adapted, grown_tokenizer.special_tokens[END_OF_TEXT])
    before = copy.deepcopy(adapted.state_dict())
    first = reply_loss(adapted, examples)
    losses = fit_replies(adapted, examples, steps=20, batch_size=2, lr=1e-2)
    assert reply_loss(adapted, examples) < first and len(losses) == 20
    after = adapted.state_dict()
    moved = {name for name in after if not torch.equal(after[name], before[name])}
    assert moved and all("lora_" in name or name in ("embeddings.wte.weight", "lm_head.weight") for name in moved)
    rows_moved = (after["embeddings.wte.weight"] != before["embeddings.wte.weight"]).any(dim=1)
    V = tokenizer.vocab_size
    assert rows_moved.nonzero().flatten().tolist() == [V - 1, V, V + 1]  # END's row and the new two


def trained_adapter(tmp_path, seed: int = 0):
    model, tokenizer = small_bpe()
    grown, grown_tokenizer = add_reply_tokens(model, tokenizer)
    torch.manual_seed(seed)
    adapted = add_lora(copy.deepcopy(grown), r=2, alpha=4)
    train_new_rows(adapted, grown_tokenizer.special_tokens[END_OF_TEXT])
    fit_replies(adapted, [encode_pair(grown_tokenizer, "Good morrow", "How fares your father?")], 5, 1, 1e-2)
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, adapted, grown_tokenizer, model, "small")
    return path, model, tokenizer, adapted


def test_an_adapter_file_holds_the_adapter_only_and_loads_merged_with_the_same_outputs(tmp_path):
    path, model, tokenizer, adapted = trained_adapter(tmp_path)
    tensors = load_file(path)
    assert set(tensors) == {k.removesuffix(".weight") for k in adapted.state_dict() if ".lora_" in k} | {"rows"}
    loaded, grown = load_adapter(path, model, tokenizer)
    assert not any("lora_" in name for name, _ in loaded.named_parameters())  # merged: a plain GPT
    idx = torch.tensor([encode_pair(grown, "Good morrow", "How fares?")[0]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx), adapted(idx), atol=1e-5, rtol=1e-5)
    unmerged, _ = read_adapter(path, model, tokenizer)
    assert fingerprint(unmerged) == fingerprint(adapted)


def test_an_adapter_refuses_another_base_and_a_damaged_file_with_one_line(tmp_path):
    path, model, tokenizer, _ = trained_adapter(tmp_path)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.lm_head.weight[0, 0] += 1e-3  # one weight differs
    with pytest.raises(ValueError, match=r"adapts 'small' \(weights [0-9a-f]{12}\), not this one") as error:
        load_adapter(path, other, tokenizer)
    assert "\n" not in str(error.value)
    tensors, header = load_file(path), header_of(path)
    tensors["rows"] = torch.zeros(4, 16)  # four rows for three tokens
    save_file(tensors, tmp_path / "bad.safetensors", metadata={"tinytorch": json.dumps(header)})
    with pytest.raises(ValueError, match=r"rows is torch.float32 \(4, 16\), expected finite floats \(3, 16\)"):
        load_adapter(tmp_path / "bad.safetensors", model, tokenizer)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable tinytorch adapter"):
        load_adapter(tmp_path / "junk.safetensors", model, tokenizer)
    with pytest.raises(FileNotFoundError, match="tinytorch finetune"):
        load_adapter(tmp_path / "missing.safetensors", model, tokenizer)


def test_reply_stops_at_the_end_token_and_says_what_is_wrong():
    model, tokenizer = small_bpe()
    grown, grown_tokenizer = add_reply_tokens(model, tokenizer)
    end = grown_tokenizer.special_tokens[END_OF_TEXT]
    with torch.no_grad():  # every position's last vector is then ln_f's bias, and the end token's row points along it
        grown.ln_f.weight.zero_()
        grown.ln_f.bias.copy_(torch.linspace(-1, 1, 16))
        grown.lm_head.weight[end] = 10 * grown.ln_f.bias  # its logit wins every step: the reply ends at once
    assert reply(grown, grown_tokenizer, "Good morrow", temperature=0) == ""
    with pytest.raises(ValueError, match="non-empty"):
        reply(grown, grown_tokenizer, "  ")
    with pytest.raises(ValueError, match="load a reply adapter"):
        reply(model, tokenizer, "Good morrow")


def test_the_shipped_adapter_replies_and_refuses_another_models_adapter(capsys, tmp_path):
    assert REPLY_ADAPTER.is_file() and REPLY_ADAPTER.stat().st_size < 2_000_000  # small: the adapter only
    code, out, err = cli(capsys, "reply", "To be, or not to be, that is the question:", "--seed", "0")
    assert code == 0 and out.strip() and "<|" not in out, err
    path, *_ = trained_adapter(tmp_path)  # an adapter of another model
    assert_one_line_error(*cli(capsys, "reply", "Good morrow", "--adapter", path), "adapts 'small'")


@pytest.fixture
def few_pairs(monkeypatch):
    """finetune on the pairs of two plays (one held out), so that a run takes seconds."""
    paths = tinytorch.finetune.play_paths()
    monkeypatch.setattr(tinytorch.finetune, "play_paths", lambda: {k: paths[k] for k in ("hamlet", "othello")})


def test_finetune_stopped_and_resumed_writes_the_adapter_of_an_uninterrupted_run(tmp_path, capsys, few_pairs):
    small = ["--rank", "2", "--batch-size", "2"]
    assert cli(capsys, "finetune", "--out", tmp_path / "whole", "--steps", "6", *small)[0] == 0
    assert cli(capsys, "finetune", "--out", tmp_path / "parts", "--steps", "3", *small)[0] == 0
    code, out, err = cli(capsys, "finetune", "--out", tmp_path / "parts", "--resume", "--steps", "6")
    assert code == 0 and "resuming" in out, err
    whole, parts = load_file(tmp_path / "whole/adapter.safetensors"), load_file(tmp_path / "parts/adapter.safetensors")
    assert whole.keys() == parts.keys() and all(torch.equal(whole[k], parts[k]) for k in whole)
    code, out, err = cli(capsys, "reply", "Good morrow", "--adapter", tmp_path / "parts/adapter.safetensors")
    assert code == 0, err


def test_finetune_saves_on_ctrl_c_and_refuses_to_overwrite_a_run(tmp_path, capsys, few_pairs, monkeypatch):
    calls = []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    real = tinytorch.finetune.reply_step
    monkeypatch.setattr(tinytorch.finetune, "reply_step", interrupted)
    code, out, err = cli(capsys, "finetune", "--out", tmp_path, "--steps", "6", "--rank", "2", "--batch-size", "2")
    assert code == 130 and f"stopped at step 2; resume with `tinytorch finetune --resume --out {tmp_path}`" in err
    assert header_of(tmp_path / "checkpoint.safetensors")["step"] == 2
    code, out, err = cli(capsys, "finetune", "--out", tmp_path, "--steps", "6")
    assert code == 1 and "--resume" in err
    code, out, err = cli(capsys, "finetune", "--out", tmp_path, "--resume", "--lr", "1e-2")
    assert code == 1 and "--lr cannot be given" in err


def test_finetune_refuses_a_folder_without_room_before_training(tmp_path, capsys, few_pairs, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("Usage", "total used free")(10**9, 10**9 - 50_000, 50_000)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage)
    monkeypatch.setattr(tinytorch.finetune, "reply_step", lambda *args: pytest.fail("trained without room to save"))
    code, out, err = cli(capsys, "finetune", "--out", tmp_path, "--steps", "6", "--rank", "2", "--batch-size", "2")
    assert_one_line_error(code, out, err, f"{tmp_path} has 0.1 MB free, but this run needs about", "another --out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]


def test_a_genre_adapter_holds_the_adapters_and_the_head_and_loads_merged_with_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    base = GPT(GPTConfig(20, 16, 2, 2, 16)).eval()
    classifier = tinytorch.finetune.GenreClassifier(add_lora(copy.deepcopy(base), r=2, alpha=4))
    ids = torch.randint(0, 20, (8, 16))
    tinytorch.finetune.fit_classifier(classifier, ids, torch.arange(8) % 4, steps=3, batch_size=4, lr=1e-2)
    path = tmp_path / "genre.safetensors"
    tinytorch.finetune.save_classifier(path, classifier, base, "small")
    assert {"head.weight", "head.bias"} <= set(load_file(path)) and header_of(path)["task"] == "genre"
    loaded = tinytorch.finetune.load_classifier(path, base)
    assert not any("lora_" in name for name, _ in loaded.named_parameters())  # merged
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), classifier(ids), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="an adapter for 'genre', not for 'reply'"):
        read_adapter(path, base, BPETokenizer.train("abc " * 50, 260))
    other = copy.deepcopy(base)
    with torch.no_grad():
        other.ln_f.bias += 1e-3
    with pytest.raises(ValueError, match="adapts 'small'"):
        tinytorch.finetune.load_classifier(path, other)


def test_the_shipped_genre_adapter_classifies_a_passage_and_says_what_is_wrong(capsys):
    assert tinytorch.finetune.GENRE_ADAPTER.stat().st_size < 500_000  # small: the adapters and a head
    code, out, err = cli(capsys, "classify", "Now is the winter of our discontent\nMade glorious summer by this sun")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4, err
    shares = [float(line.split()[1].rstrip("%")) for line in lines]
    assert shares == sorted(shares, reverse=True) and abs(sum(shares) - 100) < 0.5
    assert {line.split()[0] for line in lines} == set(tinytorch.finetune.GENRES)
    assert_one_line_error(*cli(capsys, "classify", "x" * 200), "200 characters", "1 to 128")
    assert_one_line_error(*cli(capsys, "classify", "café"), "é")


def test_finetune_genre_trains_a_classifier_that_classify_uses(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tinytorch.finetune, "passages", small_passages(tinytorch.finetune.passages))
    out = tmp_path / "genre"
    code, stdout, err = cli(capsys, "finetune", "--task", "genre", "--out", out, "--steps", "4", "--batch-size", "4")
    assert code == 0 and "accuracy" in stdout, err
    code, stdout, err = cli(capsys, "finetune", "--out", out, "--resume", "--steps", "6")
    assert code == 0 and "resuming" in stdout and header_of(out / "adapter.safetensors")["step"] == 6, err
    assert_one_line_error(*cli(capsys, "finetune", "--out", out, "--resume", "--task", "reply"), "--task")
    code, stdout, err = cli(capsys, "classify", "To be, or not to be", "--adapter", out / "adapter.safetensors")
    assert code == 0 and len(stdout.splitlines()) == 4, err
    code, stdout, err = cli(capsys, "reply", "To be", "--adapter", out / "adapter.safetensors")
    assert_one_line_error(code, stdout, err, "an adapter for 'genre', not for 'reply'")


def small_passages(passages):
    """chapter 12's passages, a few per genre: a genre run in seconds."""

    def few(plays, genres, per_genre, length=128, seed=0):
        return passages(plays, genres, 4, length, seed)

    return few
