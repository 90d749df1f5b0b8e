"""Appendix 10: `tinytorch train --minutes N` chooses the model for the budget and ends on time."""

import time

import pytest
import torch
from test_cli import assert_one_line_error, cli

from tinytorch import __main__ as main_module
from tinytorch import budget, training
from tinytorch.budget import FRONTIER, Deadline, Recipe, choose_recipe, plan_run
from tinytorch.checkpoint import Checkpointing, load_checkpoint
from tinytorch.config import GPTConfig, count_parameters
from tinytorch.embeddings import CharTokenizer
from tinytorch.gpt import GPT
from tinytorch.training import TrainConfig

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 40


def test_minutes_trains_with_muon_exactly_where_chapter_11_measured_it_ahead():
    assert {r.minutes: r.optimizer for r in FRONTIER} == {2: "muon", 5: "adamw", 10: "muon", 30: "muon"}


def test_the_frontier_grows_with_the_budget():
    assert [r.minutes for r in FRONTIER] == sorted({r.minutes for r in FRONTIER})
    sizes = [count_parameters(GPT(r.config(76))) for r in FRONTIER]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]  # more minutes, more parameters


@pytest.mark.parametrize(
    ("minutes", "speed", "expected"),
    [
        (2, 1.0, 0),  # the study's own machine and budgets
        (FRONTIER[-1].minutes, 1.0, -1),
        (1000, 1.0, -1),  # beyond the study: its largest
        (0.5, 1.0, 0),  # below it: its smallest
        (FRONTIER[1].minutes, 0.5, 0),  # a machine half as fast: the work of half the minutes
        (FRONTIER[1].minutes / 2, 2.0, 1),  # twice as fast: twice the minutes' work
    ],
)
def test_choose_recipe_picks_for_the_work_the_minutes_buy_on_this_machine(minutes, speed, expected):
    assert choose_recipe(minutes, speed) == FRONTIER[expected]


def fake_pace(monkeypatch, seconds):
    """seconds_per_step answers `seconds(config)` at once, instead of timing."""
    calls = []

    def pace(config, batch_size, ids, device, probe_seconds=2.0):
        calls.append(config)
        return seconds(config)

    monkeypatch.setattr(budget, "seconds_per_step", pace)
    return calls


def test_plan_run_measures_chooses_and_fits_the_steps_to_the_deadline(monkeypatch):
    monkeypatch.setattr(budget, "STUDY_SECONDS_PER_STEP", 0.05)
    calls = fake_pace(monkeypatch, lambda config: 0.05 if config == FRONTIER[0].config(76) else 0.2)
    ids = torch.zeros(10_000, dtype=torch.uint8)
    deadline = time.perf_counter() + 60 * FRONTIER[-1].minutes
    config, cfg, plan = plan_run(FRONTIER[-1].minutes, 76, ids, deadline, torch.device("cpu"), eval_batches=3, seed=7)
    recipe = FRONTIER[-1]
    assert config == recipe.config(76) and len(calls) == 2  # the probe, then the chosen shape
    evaluations = budget.EVALUATIONS * 2 * 3 * 0.2 / 3
    assert abs(cfg.max_steps - (60 * recipe.minutes - evaluations) / 0.2) <= 2
    assert (cfg.batch_size, cfg.lr, cfg.min_lr, cfg.eval_batches, cfg.seed) == (
        recipe.batch_size,
        recipe.lr,
        recipe.min_lr,
        3,
        7,
    )
    assert -(-cfg.max_steps // cfg.eval_interval) == budget.EVALUATIONS
    assert plan["recipe"]["n_embd"] == recipe.n_embd and plan["speed"] == pytest.approx(1.0)
    assert f"{recipe.n_layer} blocks of width {recipe.n_embd}" in plan["why"]


def test_a_faster_machine_gets_a_bigger_model_for_the_same_minutes(monkeypatch):
    monkeypatch.setattr(budget, "STUDY_SECONDS_PER_STEP", 0.05)
    ids = torch.zeros(10_000, dtype=torch.uint8)
    chosen = {}
    for speed in (1, 4, 16):
        fake_pace(monkeypatch, lambda config, speed=speed: 0.05 / speed)
        deadline = time.perf_counter() + 60 * FRONTIER[0].minutes
        chosen[speed], _, _ = plan_run(FRONTIER[0].minutes, 76, ids, deadline, torch.device("cpu"))
    assert chosen[1] == FRONTIER[0].config(76)
    assert chosen[16] == choose_recipe(FRONTIER[0].minutes, 16).config(76) != chosen[1]


def test_too_few_minutes_for_twenty_steps_is_a_value_error(monkeypatch):
    fake_pace(monkeypatch, lambda config: 1.0)
    with pytest.raises(ValueError, match="leave time for only 0 training steps.*give more minutes"):
        plan_run(0.01, 76, torch.zeros(1000, dtype=torch.uint8), time.perf_counter() + 0.6, torch.device("cpu"))


def test_seconds_per_step_times_a_few_real_steps():
    ids = torch.randint(0, 20, (5_000,), dtype=torch.uint8)
    pace = budget.seconds_per_step(GPTConfig(20, 16, 1, 2, 16), 2, ids, torch.device("cpu"), seconds=0.05)
    assert 0 < pace < 30  # seconds: any machine, quiet or busy


class TickingClock:
    """A stand-in for time.perf_counter that moves `tick` seconds at every reading: a run's pace without a real
    machine's speed, so a deadline test ends at the same step on a quiet or a busy machine."""

    def __init__(self, tick: float):
        self.now, self.tick = 1000.0, tick

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


@pytest.mark.parametrize(  # one evaluation; or one every 50 steps of the steps that fit, not of max_steps
    ("max_steps", "eval_interval"), [(2000, 2000), (10**6, 50)]
)
def test_train_with_a_deadline_refits_max_steps_to_end_by_it(tmp_path, monkeypatch, max_steps, eval_interval):
    clock = TickingClock(0.001)
    monkeypatch.setattr(training, "time", clock)  # train's and Deadline's clock only; tqdm and pytest keep the real one
    monkeypatch.setattr(budget, "time", clock)
    tokenizer = CharTokenizer.from_text(TEXT)
    ids = torch.tensor(tokenizer.encode(TEXT), dtype=torch.uint8)
    model = GPT(GPTConfig(tokenizer.vocab_size, 16, 1, 2, 16))
    cfg = TrainConfig(
        max_steps=max_steps,
        batch_size=2,
        lr=1e-3,
        min_lr=1e-4,
        warmup_steps=5,
        eval_interval=eval_interval,
        eval_batches=1,
    )
    deadline = clock.now + 0.5
    history = training.train(
        model, tokenizer, ids, ids, cfg, callbacks=[Checkpointing(tmp_path / "c.safetensors"), Deadline(deadline)]
    )
    steps = history[-1]["step"]
    assert 10 < steps < 2000  # it stopped on time: not at max_steps, nor after its first steps
    assert clock.now <= deadline  # by the run's own clock, it ended by the deadline
    saved = load_checkpoint(tmp_path / "c.safetensors").meta
    assert saved["train_config"]["max_steps"] == steps == saved["step"]  # resumable as it ended


def test_deadline_needs_one_process(monkeypatch):
    monkeypatch.setattr(training.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(training.dist, "get_rank", lambda: 0)
    monkeypatch.setattr(training.dist, "get_world_size", lambda: 2)
    tokenizer = CharTokenizer.from_text(TEXT)
    ids = torch.tensor(tokenizer.encode(TEXT), dtype=torch.uint8)
    with pytest.raises(ValueError, match="deadline needs a single process"):
        training.train(
            GPT(GPTConfig(tokenizer.vocab_size, 16, 1, 2, 16)),
            tokenizer,
            ids,
            ids,
            TrainConfig(),
            callbacks=[Deadline(1.0)],
        )


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--steps", "10"], "--steps cannot be given with it"),
        (["--preset", "tiny", "--lr", "1e-3"], "--preset, --lr cannot be given with it"),
        (["--tokenizer", "bpe"], "--tokenizer cannot be given with it"),
        (["--resume"], "--minutes plans a new run"),
    ],
)
def test_minutes_refuses_the_options_it_chooses_itself(tmp_path, capsys, options, fragment):
    out = tmp_path / "run"
    assert_one_line_error(*cli(capsys, "train", "--out", out, "--minutes", "1", *options), fragment)
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "two"])
def test_minutes_must_be_a_positive_number(tmp_path, capsys, value):
    assert_one_line_error(*cli(capsys, "train", "--out", tmp_path / "run", "--minutes", value), "--minutes")


def test_train_minutes_prints_the_choice_stores_the_plan_and_ends_on_time(tmp_path, capsys, monkeypatch):
    # The run's clock ticks 4 ms at every reading (about 20 ms a step), whatever the machine does: the plan, the
    # refits and the wall time printed are the same on a quiet or a busy machine. That a real --minutes run ends on
    # time is measured by `python benchmarks/run.py minutes`.
    clock = TickingClock(0.004)
    for module in (main_module, budget, training):
        monkeypatch.setattr(module, "time", clock)
    small = Recipe(0.1, n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=2, lr=3e-3, min_lr=3e-4, warmup=5)
    monkeypatch.setattr(budget, "FRONTIER", (small, Recipe(1.0, 2, 2, 32, 32, 4, 2e-3, 2e-4, 10, optimizer="muon")))
    monkeypatch.setattr(budget, "STUDY_SECONDS_PER_STEP", 1.0)  # this machine: 16.7x the study's pace
    fake_pace(monkeypatch, lambda config: 0.06)  # three times the clock's pace: train's deadline must make up for it
    code, out, err = cli(capsys, "train", "--out", tmp_path, "--minutes", "0.1", "--eval-batches", "1")
    assert code == 0, err
    assert "--minutes 0.1: 0.1 minutes here are 1.67 minutes of the study's machine" in out, out
    assert "2 blocks of width 32" in out and "Muon on the blocks' matrices" in out and "for --minutes 0.1 (" in out
    wall = 6 * (1 + float(out.split("for --minutes 0.1 (")[1].split("%")[0]) / 100)  # seconds, by the run's clock
    deadline = 6 - budget.SPARE_SECONDS  # training ends then, leaving a second for the final save (instant here)
    assert deadline - 0.5 < wall <= deadline, out
    meta = load_checkpoint(tmp_path / "model.safetensors").meta
    assert meta["plan"]["recipe"]["n_embd"] == 32 and meta["plan"]["minutes"] == 0.1
    assert meta["optimizer"] == {"name": "muon", "muon_lr": 0.02}  # the recipe's optimizer, which --resume follows
    assert meta["train_config"]["max_steps"] == meta["step"]
    code, out, err = cli(capsys, "train", "--resume", "--out", tmp_path, "--steps", meta["step"] + 3)
    assert code == 0, err  # a budgeted run resumes like any other, for more steps, and keeps its plan
    resumed = load_checkpoint(tmp_path / "model.safetensors").meta
    assert resumed["step"] == meta["step"] + 3 and resumed["plan"] == meta["plan"]


def test_the_plan_says_1_minute_not_1_minutes(monkeypatch):
    monkeypatch.setattr(budget, "STUDY_SECONDS_PER_STEP", 0.01)
    monkeypatch.setattr(budget, "FRONTIER", (Recipe(1, 1, 2, 16, 16, 2, 3e-3, 3e-4, 5),))
    fake_pace(monkeypatch, lambda config: 0.01)  # this machine is the study's
    ids = torch.zeros(10_000, dtype=torch.uint8)
    _, _, plan = plan_run(1, 76, ids, time.perf_counter() + 60, torch.device("cpu"))
    assert plan["why"].startswith("1 minute here are 1 minute of the study's machine"), plan["why"]
    assert "the study's best for 1 minute and up" in plan["why"], plan["why"]
