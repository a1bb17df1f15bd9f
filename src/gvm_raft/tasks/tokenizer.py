"""A character-level ``transformers`` fast tokenizer for the embedded task.

Every printable ASCII character and the newline is one token, so any text the task or the model
writes round-trips exactly; other characters map to ``<unk>``. Built with the ``tokenizers``
library (a BPE model with no merges is a character model) and saved with ``save_pretrained``,
so ``AutoTokenizer.from_pretrained`` loads it like any Hugging Face tokenizer.
"""

from __future__ import annotations

import string

from tokenizers import Tokenizer, decoders, models, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
CHARACTERS = [c for c in string.printable if c not in "\t\r\x0b\x0c"]


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """Vocabulary: pad, bos, eos, unk, then the 96 characters; bos is prepended on encode."""
    specials = [PAD, BOS, EOS, UNK]
    vocab = {token: i for i, token in enumerate(specials + CHARACTERS)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",  # decoder-only generation pads on the left
    )
