"""Run by tests/test_training.py under torchrun: a few DDP training steps on 2 CPU processes."""

import sys

import torch
import torch.distributed as dist

from tinytorch.config import GPTConfig
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import GPT
from tinytorch.training import TrainConfig, train

out = sys.argv[1]
dist.init_process_group("gloo")
torch.manual_seed(0)
text = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 20
tokenizer = CharTokenizer.from_text(text)
ids = torch.tensor(tokenizer.encode(text))
model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32))
cfg = TrainConfig(
    max_steps=4, batch_size=4, grad_accum=2, lr=1e-3, min_lr=1e-4, warmup_steps=1, eval_interval=2, eval_batches=2
)
history = train(model, tokenizer, ids, ids, cfg, progress=False)
torch.save({"state": model.state_dict(), "history": history}, f"{out}/rank{dist.get_rank()}.pt")
dist.destroy_process_group()
