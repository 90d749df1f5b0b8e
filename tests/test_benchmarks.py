"""The benchmarks' shared training helper keeps up with the package (it wraps train's evaluate)."""

import importlib.util
from pathlib import Path

import torch

from tinytorch.config import GPTConfig
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import GPT
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
