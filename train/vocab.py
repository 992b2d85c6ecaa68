"""Train a WordPiece vocabulary on review text and wrap it as a transformers BERT tokenizer.

Usage:
    python -m train.vocab OUT_DIR FILE [FILE ...] [--vocab-size 16000]

FILE: a rating file (its documents are used) or a one-review-a-line file, plain or .gz.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts, vocab_size: int = 16000, min_frequency: int = 2):
    """A cased WordPiece tokenizer (no lower-casing, no accent stripping: both would break Hangul)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizer

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=False, lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=SPECIAL_TOKENS)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts) if hasattr(texts, "__len__") else None)
    # transformers 5: BertTokenizer *is* the fast tokenizer, and it must be built from `vocab=`
    # (a `vocab_file=` argument is silently ignored and yields a 5-token vocabulary).
    return BertTokenizer(vocab=tok.get_vocab(), do_lower_case=False, strip_accents=False,
                         tokenize_chinese_chars=True)


def read_texts(paths) -> list[str]:
    from nsmc.corpus import is_ratings, read_lines, read_ratings

    texts: list[str] = []
    for path in paths:
        texts += read_ratings(path).documents if is_ratings(path) else read_lines(path)
    return texts


def main(argv=None) -> None:
    from nsmc.errors import UserError
    from nsmc.cli import command_errors

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--vocab-size", type=int, default=16000)
    args = parser.parse_args(argv)
    with command_errors() as outputs:
        outputs.watch(args.out_dir)
        missing = [f for f in args.files if not Path(f).is_file()]
        if missing:
            raise UserError(f"{', '.join(missing)}: not found. Pass rating files or one-review-a-line files "
                            "(plain or .gz).")
        texts = read_texts(args.files)
        tokenizer = train_wordpiece(texts, args.vocab_size)
        tokenizer.save_pretrained(args.out_dir)
        print(f"{len(tokenizer):,}-token WordPiece vocabulary from {len(texts):,} texts -> {args.out_dir}")


if __name__ == "__main__":
    main()
