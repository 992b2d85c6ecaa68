"""train.pretrain's objectives on a tiny BERT: masked-LM's loss, ELECTRA's corruption, its shared
embeddings and its export."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from conftest import TINY_BERT
from transformers import AutoModelForSequenceClassification, BertConfig, BertForMaskedLM

from train.pretrain import OBJECTIVES, MaskingCollate, corrupt

REVIEWS = ["정말 재밌는 영화였어요 배우들 연기가 좋았다", "지루하고 뻔한 이야기 시간이 아까웠다",
           "그냥 그랬어요", "다시 보고 싶은 영화 음악도 최고"]


def batch_and_module(tokenizer, objective: str, seed: int = 0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **TINY_BERT)
    cfg = SimpleNamespace(batch_size=4, generator_hidden_size=16, discriminator_weight=50.0)
    module_class, architecture = OBJECTIVES[objective]
    module = module_class(architecture(config), tokenizer, cfg)
    module.log = lambda *args, **kwargs: None  # outside a Trainer
    ids = tokenizer(REVIEWS)["input_ids"]
    batch = MaskingCollate(tokenizer, mlm_probability=0.3)([(row, 0) for row in ids])
    return batch, module


def test_masked_lm_loss_is_transformers_own(tiny_tokenizer):
    """The vocabulary projection runs on the masked positions only, and gives the same loss as
    BertForMaskedLM computing logits everywhere."""
    batch, module = batch_and_module(tiny_tokenizer, "mlm")
    assert isinstance(module.model, BertForMaskedLM) and (batch["labels"] != -100).any()
    module.model.eval()  # no dropout: the two forward passes must see the same network
    ours = module._step(batch, "train")
    assert torch.allclose(ours, module.model(**batch).loss, atol=1e-5)


def test_every_batch_masks_a_token(tiny_tokenizer):
    """A loss over no masked token is NaN (masked-LM) or a crash (ELECTRA's sampling): a batch of one
    short review, which 15% masking often leaves untouched, still gets one."""
    ids = tiny_tokenizer(["재밌다"])["input_ids"]
    collate = MaskingCollate(tiny_tokenizer, mlm_probability=0.15)
    for _ in range(50):
        labels = collate([(ids[0], 0)])["labels"]
        assert (labels != -100).sum() >= 1


def test_corrupt_marks_only_masked_positions_that_changed():
    ids = torch.tensor([[2, 4, 9, 9, 3, 0]])  # 9 is [MASK]; 0 pads
    labels = torch.tensor([[-100, -100, 7, 8, -100, -100]])  # the originals of the masked positions
    corrupted, replaced = corrupt(ids, labels, samples=torch.tensor([7, 5]))  # the first sample is right
    assert corrupted.tolist() == [[2, 4, 7, 5, 3, 0]]
    assert replaced.tolist() == [[False, False, False, True, False, False]]


def test_electra_generator_learns_through_the_models_token_embeddings(tiny_tokenizer):
    batch, module = batch_and_module(tiny_tokenizer, "electra")
    assert type(module.model).__name__ == "BertModel" and module.model.pooler is None
    assert module.generator.embeddings.word_embeddings.weight.shape[0] == 1  # no table of its own
    module.cfg.discriminator_weight = 0.0  # the generator's loss alone
    module._step(batch, "train").backward()
    assert module.model.get_input_embeddings().weight.grad.abs().sum() > 0
    assert module.model.encoder.layer[0].attention.self.query.weight.grad.abs().sum() == 0

    module.zero_grad()
    module.cfg.discriminator_weight = 50.0
    loss = module._step(batch, "train")
    loss.backward()
    query = module.model.encoder.layer[0].attention.self.query
    assert torch.isfinite(loss) and query.weight.grad.abs().sum() > 0


def test_electra_export_is_the_body_of_a_classifier(tiny_tokenizer, tmp_path):
    _, module = batch_and_module(tiny_tokenizer, "electra")
    module.model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    for name, weight in module.model.state_dict().items():
        assert torch.equal(classifier.bert.state_dict()[name], weight), name
