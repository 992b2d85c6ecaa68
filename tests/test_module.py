import lightning as L
import torch

from train.config import TrainConfig
from train.module import ClassifierModule, configure_schedule


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)


def lr_after(scheduler_name, steps=10, epochs=3, **kw):
    cfg = TrainConfig(scheduler=scheduler_name, learning_rate=1.0, **kw)
    module = Tiny()
    trainer = L.Trainer(max_steps=steps, max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False)
    module.trainer = trainer
    trainer.strategy.connect(module)
    return configure_schedule(module, module.layer, cfg)


def test_scheduler_is_returned_under_the_key_lightning_reads():
    conf = lr_after("exponential", gamma=0.5)
    assert "lr_scheduler" in conf and "scheduler" not in conf  # the tutorial's key bug
    sched = conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "epoch"
    conf["optimizer"].step()
    sched.step()
    assert conf["optimizer"].param_groups[0]["lr"] == 0.5  # it really steps


def test_linear_schedule_warms_up_and_decays_to_zero():
    conf = lr_after("linear", steps=100, warmup_ratio=0.1)
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[9] and max(lrs) == lrs[9] and lrs[-1] < 0.02


def test_no_weight_decay_on_bias_and_layernorm(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    from train.module import param_groups

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    decay, no_decay = param_groups(model, 0.01)
    assert decay["params"] and no_decay["params"]
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0


def test_constant_schedule_has_no_scheduler():
    assert lr_after("constant").keys() == {"optimizer"}


def test_module_logs_and_trains_in_train_mode(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)  # eval mode after loading
    module = ClassifierModule(model, tiny_tokenizer, TrainConfig())
    assert module.model.training  # dropout on for fine-tuning
    ckpt = {}
    module.on_save_checkpoint(ckpt)
    assert "tokenizer.json" in ckpt["nsmc"]["tokenizer_files"]
    assert len(ckpt["nsmc"]["hf_config"]["id2label"]) == 2


def test_build_model_keeps_the_body_and_gives_another_label_set_a_fresh_head(tiny_model_dir):
    """From a classifier for negative/positive (like models/nsmc-small) to a three-label task, offline."""
    from transformers import AutoModelForSequenceClassification

    from train.module import build_model

    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    logs = []
    cfg = TrainConfig(pretrained_model_name=str(tiny_model_dir))
    model = build_model(cfg, ["food", "sports", "travel"], log=logs.append)
    assert model.config.id2label == {0: "food", 1: "sports", 2: "travel"}
    assert model.classifier.out_features == 3
    assert torch.equal(model.bert.encoder.layer[0].attention.self.query.weight,
                       base.bert.encoder.layer[0].attention.self.query.weight)
    assert len(logs) == 1 and "initialised afresh" in logs[0] and "negative, positive" in logs[0]
    # Same labels, same task: the trained head is kept, and nothing is said.
    same = build_model(cfg, ["negative", "positive"], log=logs.append)
    assert torch.equal(same.classifier.weight, base.classifier.weight) and len(logs) == 1
    # Two labels with other names: a fresh head too.
    other = build_model(cfg, ["ham", "spam"], log=logs.append)
    assert not torch.equal(other.classifier.weight, base.classifier.weight) and len(logs) == 2


def test_metrics_handle_three_classes(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=3,
                                                               ignore_mismatched_sizes=True)
    module = ClassifierModule(model, tiny_tokenizer, TrainConfig())
    preds, labels = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 1])
    module.val_acc(preds, labels)
    module.val_f1(preds, labels)
    assert module.val_acc.compute() == 0.75
    # macro: the mean of per-class F1
    assert abs(module.val_f1.compute().item() - (1 + 2 / 3 + 2 / 3) / 3) < 1e-6


def test_a_float16_base_trains_in_float32(tmp_path, tiny_model_dir):
    """Exports may be float16 (models/nsmc-small is): training from one in float16 on CPU gave NaN losses."""
    from transformers import AutoModelForSequenceClassification

    from train.module import build_model

    AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).half().save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_bytes((tiny_model_dir / "tokenizer.json").read_bytes())
    for labels in (["negative", "positive"], ["a", "b", "c"]):
        model = build_model(TrainConfig(pretrained_model_name=str(tmp_path)), labels, log=lambda _: None)
        assert {p.dtype for p in model.parameters()} == {torch.float32}
    scratch = build_model(TrainConfig(pretrained_model_name=str(tmp_path), from_scratch=True), ["a", "b"],
                          log=lambda _: None)
    assert {p.dtype for p in scratch.parameters()} == {torch.float32}
