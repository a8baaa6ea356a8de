"""LoRA+ in the Hugging Face Trainer.

``LoraPlusTrainer`` (or ``LoraPlusTrainerMixin`` on your own Trainer subclass) builds its
optimiser in ``create_optimizer`` with ``scaling.loraplus.create_loraplus_optimizer``. That is
the hook the Trainer itself calls, so it works under DeepSpeed and FSDP, which refuse
``Trainer(optimizers=...)``. The optimiser class and its settings (betas, eps, fused, ...) come
from ``TrainingArguments`` as usual; ``learning_rate`` is A's rate and ``weight_decay`` is
honoured. ``LearningRateCallback`` adds every group's learning rate to the logs.

    trainer = LoraPlusTrainer(model=peft_model, args=args, train_dataset=ds,
                              loraplus_lr_ratio=16, callbacks=[LearningRateCallback()])
"""
from __future__ import annotations

from transformers import Trainer, TrainerCallback

from scaling.loraplus import DEFAULT_RATIO, create_loraplus_optimizer, group_learning_rates


class LoraPlusTrainerMixin:
    """Put before ``transformers.Trainer`` (or a subclass) in the bases."""

    def __init__(self, *args, loraplus_lr_ratio: float | str = DEFAULT_RATIO, loraplus_lr_embedding: float = 1e-6,
                 **kwargs):
        self.loraplus_lr_ratio = loraplus_lr_ratio
        self.loraplus_lr_embedding = loraplus_lr_embedding
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            if getattr(self, "optimizer_cls_and_kwargs", None) is not None:
                optimizer_cls, kwargs = self.optimizer_cls_and_kwargs
            else:
                optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            kwargs = dict(kwargs)
            lr = kwargs.pop("lr", self.args.learning_rate)
            kwargs.pop("weight_decay", None)  # one source of truth: args.weight_decay
            if {"params", "model", "optimizer_dict"} & kwargs.keys():
                raise ValueError(f"optimizer {self.args.optim!r} builds its own parameter groups; "
                                 "LoRA+ needs a plain torch-style optimizer (e.g. adamw_torch)")
            self.optimizer = create_loraplus_optimizer(
                opt_model, optimizer_cls, lr=lr, loraplus_lr_ratio=self.loraplus_lr_ratio,
                loraplus_lr_embedding=self.loraplus_lr_embedding, weight_decay=self.args.weight_decay, **kwargs)
        return self.optimizer


class LoraPlusTrainer(LoraPlusTrainerMixin, Trainer):
    """``transformers.Trainer`` with the LoRA+ optimiser."""


class LearningRateCallback(TrainerCallback):
    """Adds ``lr/<group name>`` for every optimiser group to each training log entry (and to
    ``state.log_history``): the rates the last optimiser step used, read before the scheduler
    moves them. ``history`` keeps (step, {group: lr})."""

    def __init__(self):
        self.history: list[tuple[int, dict[str, float]]] = []
        self._last: dict[str, float] = {}

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if optimizer is not None:
            self._last = {f"lr/{name}": lr for name, lr in group_learning_rates(optimizer).items()}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self._last or logs is None or "train_runtime" in logs:  # not the end-of-training summary
            return
        rates = dict(self._last)
        logs.update(rates)  # callbacks after this one (reporters) see the rates
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(rates)
        self.history.append((state.global_step, rates))
