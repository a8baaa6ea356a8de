"""scaling.hf: LoRA+ through the Hugging Face Trainer's create_optimizer, with callbacks."""
from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

from scaling.hf import LearningRateCallback, LoraPlusTrainer
from scaling.monitor import FeatureLearningMonitor


class TinySentences(torch.utils.data.Dataset):
    def __init__(self, n=16, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 97, (n, 8), generator=gen)
        self.labels = torch.randint(0, 2, (n,), generator=gen)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.labels[i]}


@pytest.fixture
def peft_bert():
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=64, num_labels=2)
    return get_peft_model(BertForSequenceClassification(cfg), LoraConfig(
        r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"]))


def test_trainer_builds_the_loraplus_optimizer_and_logs_every_group(peft_bert, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-3,
                             weight_decay=0.05, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                             lr_scheduler_type="linear")
    rates = LearningRateCallback()
    monitor = FeatureLearningMonitor(peft_bert, every=2)
    trainer = LoraPlusTrainer(model=peft_bert, args=args, train_dataset=TinySentences(), loraplus_lr_ratio=8,
                              callbacks=[rates, monitor.callback()])
    trainer.train()
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert set(groups) == {"lora_A", "lora_B", "other", "other_no_decay"}
    assert groups["lora_A"]["weight_decay"] == 0.05 and groups["other_no_decay"]["weight_decay"] == 0.0
    logged = [e for e in trainer.state.log_history if "lr/lora_A" in e]
    assert len(logged) == 4 and len(rates.history) == 4
    for entry in logged:  # the linear schedule decays every group alike: the ratio stays
        assert entry["lr/lora_A"] == pytest.approx(entry["learning_rate"])  # the rate the step used
        assert entry["lr/lora_B"] == pytest.approx(8 * entry["lr/lora_A"])
        assert entry["lr/other"] == pytest.approx(entry["lr/lora_A"])
    assert sorted(monitor.frame().step.unique()) == [0, 1, 3]
    assert set(monitor.frame().metric) >= {"delta1", "delta2", "delta3", "share_a", "share_b"}


def test_unsupported_optimizer_is_a_clear_error(peft_bert, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, report_to=[], use_cpu=True, optim="adamw_torch")
    trainer = LoraPlusTrainer(model=peft_bert, args=args, train_dataset=TinySentences())
    trainer.optimizer_cls_and_kwargs = (torch.optim.AdamW, {"lr": 1e-3, "params": []})
    with pytest.raises(ValueError, match="builds its own parameter groups"):
        trainer.create_optimizer()
