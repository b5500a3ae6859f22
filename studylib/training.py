"""What every training stage shares (teachers, vision pretraining, recovery): the Hugging
Face `TrainingArguments` they all use and the loss log they keep."""

from __future__ import annotations

import torch


class LossLog:
    """A Trainer callback keeping (step, loss) pairs, for summaries and the loss plot."""

    def __init__(self):
        from transformers import TrainerCallback

        log = self

        class _Callback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    log.rows.append({"step": log.step_offset + state.global_step,
                                     "loss": float(logs["loss"])})

        self.rows: list[dict[str, float]] = []
        self.step_offset = 0  # set by multi-stage training so steps keep counting up
        self.callback = _Callback()


def training_arguments(out_dir: str, *, epochs: float, batch_size: int, lr: float, seed: int,
                       logging_steps: int = 10, warmup_ratio: float = 0.03, **overrides):
    """TrainingArguments shared by teacher and recovery runs (no checkpoints mid-run)."""
    from transformers import TrainingArguments

    kwargs = dict(
        output_dir=out_dir,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        lr_scheduler_type="cosine",
        warmup_steps=warmup_ratio,
        weight_decay=0.0,
        logging_steps=logging_steps,
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        disable_tqdm=False,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def fit_stage(model, records, collator, losses: LossLog, *, seed: int, epochs: float,
              batch_size: int, lr: float, logging_steps: int, bf16: bool,
              step_offset: int = 0, callbacks=(), in_order: bool = False):
    """One training stage with the HF Trainer (one cosine schedule); the loss log continues
    across stages. `in_order`: the Trainer reads the records as given, for batches composed
    beforehand (`testbed.plan.balanced_batches`)."""
    import tempfile

    from transformers import Trainer

    losses.step_offset = step_offset
    extra = {"train_sampling_strategy": "sequential"} if in_order else {}
    with tempfile.TemporaryDirectory() as tmp:
        args = training_arguments(tmp, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                  logging_steps=logging_steps, bf16=bf16, **extra)
        trainer = Trainer(model=model, args=args, train_dataset=records, data_collator=collator,
                          callbacks=[losses.callback, *callbacks])
        return trainer.train()
