"""The benchmarks' shared training helper keeps up with the package (it wraps train's evaluate)."""

import ast
import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from tinytorch.config import GPTConfig, count_parameters
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import GPT
from tinytorch.modern import apply_rotary
from tinytorch.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("run", ROOT / "benchmarks" / "run.py")
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)


def test_timed_train_records_training_minutes_at_each_evaluation():
    text = "to be, or not to be, that is the question: " * 20
    tokenizer = CharTokenizer.from_text(text)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.uint8)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=16))
    cfg = TrainConfig(max_steps=6, batch_size=4, lr=1e-3, min_lr=1e-4, warmup_steps=2, eval_interval=3, eval_batches=2)
    history = run.timed_train(model, tokenizer, ids, ids, cfg)  # with a deadline, train would refit max_steps to it
    assert [record["step"] for record in history] == [3, 6]
    assert all(0 <= record["minutes"] < 10 and record["val"] > 0 for record in history)
    assert history[0]["minutes"] <= history[1]["minutes"]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chapter_11_screen_changes_one_thing_at_a_time():
    modern = _load("modern")
    shape = dict(n_layer=2, n_head=4, n_embd=16, block_size=8)
    config = GPTConfig(vocab_size=11, **shape)
    idx = torch.randint(0, 11, (2, 8), generator=torch.Generator().manual_seed(0))
    names = {}
    for change in modern.CHANGES:
        torch.manual_seed(0)
        model = modern.gpt_with(change, config)
        assert model(idx).shape == (2, 8, 11), change
        names[change] = {name for name, _ in model.named_parameters()}
    assert names["muon"] == names["none"]  # only the optimizer differs
    torch.manual_seed(0)
    rope = modern.gpt_with("rope", config)
    assert not rope.embeddings.wpe.weight.requires_grad and rope.embeddings.wpe.weight.abs().sum() == 0
    torch.manual_seed(0)
    control = modern.gpt_with("modern attention", config)
    attn = control.blocks[0].attn
    x = torch.randn(2, 8, 16)
    q = attn.attn.q_proj(x).view(2, 8, 4, 4).transpose(1, 2)
    assert torch.equal(apply_rotary(q, attn.cos, attn.sin), q)  # the control turns nothing
    zero = modern.gpt_with("zero_init", config)
    assert all(p.abs().sum() == 0 for n, p in zero.named_parameters() if n.endswith("proj.weight"))
    untied = modern.gpt_with("untied", config)
    assert untied.lm_head.weight is not untied.embeddings.wte.weight
    gqa = modern.gpt_with("gqa", config)
    assert gqa.blocks[0].attn.attn.k_proj.out_features == 8  # 2 key heads of 4 for 4 query heads
    _, make = modern.build({**shape, "change": "muon"}, 11)
    assert type(make(model, TrainConfig())).__name__ == "MuonWithAdamW"
    both = modern.gpt_with("swiglu+untied", config)  # changes joined by "+" are all made
    assert type(both.blocks[0].mlp).__name__ == "SwiGLU" and both.lm_head.weight is not both.embeddings.wte.weight
    _, make = modern.build({**shape, "change": "swiglu+muon"}, 11)
    assert type(make(model, TrainConfig())).__name__ == "MuonWithAdamW"
    runs = modern.screen_runs()
    assert len(runs) == 3 * len(modern.CHANGES) and len({modern.key(r) for r in runs}) == len(runs)


def test_chapter_11_final_runs_pair_the_recipes_and_read_the_minutes_to_the_target():
    modern = _load("modern")
    modern.BEST = None
    try:
        modern.final_runs()
    except ValueError as e:
        assert "BEST is not set" in str(e)
    else:
        raise AssertionError("final_runs ran without BEST")
    modern.BEST = {"modern": {"mlp": "relu2"}, "optimizer": "muon"}
    runs = modern.final_runs()
    assert [r["minutes"] for r in runs] == [10] * 4 + [30] * 4  # the shorter budget first
    assert [r.get("change", "modern") for r in runs[:2]] == ["none", "modern"]  # the recipes alternate
    assert {r["seed"] for r in runs} == set(modern.FINAL_SEEDS) and len({modern.key(r) for r in runs}) == len(runs)
    assert all(r["eval_interval"] == 25 * r["minutes"] for r in runs)
    assert abs(modern.minutes_to([[1.0, 1.7], [2.0, 1.5], [3.0, 1.4]], 1.6) - 1.5) < 1e-9  # halfway from 1.7 to 1.5
    assert modern.minutes_to([[1.0, 1.5]], 1.6) == 1.0  # the first evaluation already below
    assert modern.minutes_to([[1.0, 1.7], [2.0, 1.65]], 1.6) is None
    lines = modern.final_report([{**r, "val": 1.5, "steps": 10, "params": 5, "curve": [[1.0, 1.5]]} for r in runs])
    assert sum("| 10 min | frontier" in line for line in lines) == 2  # the loss table and the minutes table


def test_a_final_run_of_chapter_11_keeps_its_model_with_its_record(tmp_path, monkeypatch):
    from tinytorch.checkpoint import load_checkpoint

    modern = _load("modern")
    monkeypatch.setattr(modern, "ROOT", tmp_path)
    monkeypatch.setitem(sys.modules, "run", run)  # run() imports timed_train from benchmarks/run.py
    text = "to be, or not to be, that is the question: " * 40
    tokenizer = CharTokenizer.from_text(text)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.uint8)
    shape = dict(n_layer=1, n_head=2, n_embd=16, block_size=8, batch_size=4, lr=1e-3, min_lr=1e-4, warmup=2)
    spec = {**shape, "minutes": 0.01, "seed": 3, "eval_interval": 5, "change": "muon"}
    result = modern.run(spec, ids, ids, tokenizer)
    saved = load_checkpoint(tmp_path / "runs" / "modern" / "muon-0.01min-seed3.safetensors")
    assert saved.meta["optimizer"] == {"name": "muon", "muon_lr": 0.02}  # what --resume and the plan read
    assert saved.meta["train_config"]["max_steps"] == result["steps"] == saved.meta["history"][-1]["step"]
    assert (
        saved.meta["history"][-1]["val"] == result["val"]
        and "python benchmarks/modern.py final" in saved.meta["made_by"]
    )
    assert saved.tokenizer.chars == tokenizer.chars and saved.model.config.n_embd == 16


def test_chapter_11_holds_every_run_of_its_study_as_measured():
    modern = _load("modern")
    runs = modern.finished()
    found = [modern.key(r) for r in runs]
    assert len(found) == len(set(found)), "a run is in modern.jsonl twice"
    missing = {modern.key(spec) for spec in modern.screen_runs() + modern.final_runs()} - set(found)
    assert not missing, f"not measured yet: {sorted(missing)}"
    heldout = [tuple(row[1:]) for row in json.loads(modern.HELDOUT.read_text())]  # (change, seed, loss)
    assert sorted((change, seed) for change, seed, _ in heldout) == sorted(
        (r["change"], r["seed"]) for r in runs if "curve" in r and r["minutes"] == 30
    ), "run `python benchmarks/modern.py heldout` again: modern_heldout.json misses a 30-minute run"
    literals = (("SCREEN", modern.screen_literal(runs)), ("FINAL", modern.final_literal(runs)), ("HELDOUT", heldout))
    for variable, rows in literals:
        assert held("11_modern.ipynb", variable) == rows, (
            f"chapter 11's {variable} differs from benchmarks/modern.jsonl: paste what `python benchmarks/modern.py "
            "--report` prints"
        )


def test_chapter_12_classify_study_lists_each_run_once_and_measures_each_method(tmp_path, monkeypatch):
    finetune = _load("finetune")
    runs = finetune.classify_runs()
    assert len(runs) == 1 + 3 * 5  # the majority once, five methods at three seeds
    assert len({finetune.key(spec) for spec in runs}) == len(runs)
    assert {r["seed"] for r in runs[:6]} == {0} and [r["method"] for r in runs[:6]].count("lora") == 2
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(24) % 4
    ids = torch.randint(0, 3, (24, 8), generator=g) + 3 * labels[:, None]  # genre k: ids 3k to 3k + 2
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=16)).eval()
    data = finetune.Data(model, ids, labels, ids[:8], labels[:8], ("a", "b", "c", "d"))
    tiny = dict(steps=3, batch_size=4, lr=1e-2, per_genre=6, heldout_per_genre=2, length=8)
    results, before = [], {name: p.clone() for name, p in model.state_dict().items()}
    for method, rank in finetune.METHODS:
        result = finetune.classify({"method": method, "rank": rank, "seed": 0, **tiny}, data)
        assert 0 <= result["accuracy"] <= 1 and set(result["per_play"]) == {"a", "b", "c", "d"}, method
        results.append(result)
    head = 16 * 4 + 4
    assert [r["trainable"] for r in results[:4]] == [0, 12 * 4 + 4, head, count_parameters(model) + head]
    assert results[0]["accuracy"] == 0.25  # as many of each genre: the majority guesses the first, a quarter
    assert all(torch.equal(p, before[name]) for name, p in model.state_dict().items())  # each run trains a copy
    results_file = tmp_path / "finetune.jsonl"
    results_file.write_text("".join(json.dumps(r) + "\n" for r in results))
    monkeypatch.setattr(finetune, "RESULTS", results_file)
    monkeypatch.setattr(finetune, "REPLY_RESULTS", tmp_path / "replies.jsonl")  # none yet: the classifier's table only
    monkeypatch.setattr(finetune, "ROOT", tmp_path)
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    (tmp_path / "benchmarks").mkdir()
    finetune.report()
    table = (tmp_path / "benchmarks" / "finetune.md").read_text()
    assert "| majority class | 0 | 1 | **25.0%** |" in table and "| LoRA, rank 16 |" in table


def held(notebook: str, variable: str) -> object:
    """The literal assigned to `variable` in a code cell of the notebook."""
    for cell in json.loads((ROOT / "notebooks" / notebook).read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "code":
            for node in ast.parse("".join(cell["source"])).body:
                if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [variable]:
                    return ast.literal_eval(node.value)
    raise AssertionError(f"{notebook} assigns no {variable}")


def test_chapter_12_holds_every_run_of_the_classify_study_as_measured():
    finetune = _load("finetune")
    found = [finetune.key(r) for r in finetune.finished()]
    assert len(found) == len(set(found)), "a run is in finetune.jsonl twice"
    missing = {finetune.key(spec) for spec in finetune.classify_runs()} - set(found)
    assert not missing, f"not measured yet: {sorted(missing)}"
    assert held("12_finetune.ipynb", "CLASSIFY") == finetune.literal(finetune.finished()), (
        "chapter 12's CLASSIFY differs from benchmarks/finetune.jsonl: paste what `python benchmarks/finetune.py "
        "--report` prints"
    )


def test_chapter_12_holds_every_run_of_the_reply_study_as_measured():
    finetune = _load("finetune")
    runs = finetune.finished(finetune.REPLY_RESULTS)
    found = [finetune.key(r) for r in runs]
    assert len(found) == len(set(found)), "a run is in replies.jsonl twice"
    missing = {finetune.key(spec) for spec in finetune.reply_runs()} - set(found)
    assert not missing, f"not measured yet: {sorted(missing)}"
    assert held("12_finetune.ipynb", "REPLIES") == finetune.reply_literal(runs), (
        "chapter 12's REPLIES differs from benchmarks/replies.jsonl: paste what `python benchmarks/finetune.py "
        "--report` prints"
    )


def test_the_reply_study_trains_a_copy_and_measures_the_held_out_replies():
    finetune = _load("finetune")
    runs = finetune.reply_runs()
    assert len({finetune.key(spec) for spec in runs}) == len(runs) == 13  # the base once, 2 methods x 2 losses x 3
    torch.manual_seed(0)
    base = GPT(GPTConfig(vocab_size=12, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    model = GPT(GPTConfig(vocab_size=14, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()
    examples = [([12, 1, 2, 13, 3, 4, 11], [False] * 4 + [True] * 3), ([12, 5, 13, 6, 11], [False] * 3 + [True] * 2)]
    tokenizer = SimpleNamespace(special_tokens={"<|endoftext|>": 11, "<|speech|>": 12, "<|reply|>": 13})
    data = finetune.Pairs(base, model, tokenizer, examples * 4, examples)
    before = {name: p.clone() for name, p in model.state_dict().items()}
    tiny = dict(steps=3, batch_size=2, lr=1e-2, max_chars=300, heldout_pairs=2)
    for method, rank, masked in finetune.REPLY_METHODS:
        result = finetune.reply_study({"method": method, "rank": rank, "masked": masked, "seed": 0, **tiny}, data)
        assert result["reply_loss"] > 0 and (result["trainable"] > 0) == (method != "base"), method
    assert all(torch.equal(p, before[name]) for name, p in model.state_dict().items())  # each run trains a copy
