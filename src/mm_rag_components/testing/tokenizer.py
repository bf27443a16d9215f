"""Train small tokenizers locally (no hub access) for the tiny test models."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

#: Words every test tokenizer must know as single tokens (answer words of reranker templates).
ANSWER_WORDS: tuple[str, ...] = ("yes", "no", "Yes", "No", "True", "False", "true", "false")

_BASE_CORPUS = """
a photo of a red square on a white background . a blue circle . a green triangle next to a tree .
the dog runs on the beach . a cat sleeps on the sofa . two people ride bicycles in the city .
a plate of food with vegetables . a train at the station . an airplane in the sky . a bus on a street .
judge whether the document meets the requirements based on the query and the instruct provided .
note that the answer can only be yes or no . assert the relevance of the previous image document to
the following query , answer true or false . the query is : document : query : instruct : candidate
rank the candidates by relevance . think step by step and answer with a json ranking .
system user assistant image text picture describe what is in the image retrieve relevant passages
Yes No True False yes no true false { } [ ] ( ) < > " ' : ; , . ! ? 0 1 2 3 4 5 6 7 8 9 10 11 12
"""


def corpus_lines(extra: Iterable[str] = ()) -> list[str]:
    """The built-in training corpus plus ``extra`` lines."""
    lines = [line.strip() for line in _BASE_CORPUS.strip().splitlines() if line.strip()]
    lines.extend(ANSWER_WORDS)
    lines.extend(extra)
    return lines


def train_bpe_tokenizer(
    *,
    vocab_size: int = 512,
    special_tokens: Sequence[str] = ("<unk>", "<s>", "</s>", "<pad>"),
    extra_corpus: Iterable[str] = (),
    unk_token: str = "<unk>",
    bos_token: str | None = "<s>",
    eos_token: str | None = "</s>",
    pad_token: str | None = "<pad>",
    additional_special_tokens: Sequence[str] = (),
) -> "PreTrainedTokenizerFast":
    """Train a byte-level BPE tokenizer on a small corpus and wrap it for transformers.

    Byte-level BPE covers every string (no unknown characters), and the answer words in
    :data:`ANSWER_WORDS` end up as single tokens, with and without a leading space.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(dict.fromkeys([*special_tokens, *additional_special_tokens]))
    tok = Tokenizer(models.BPE(unk_token=unk_token))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    words = [w for w in ANSWER_WORDS for _ in range(50)]
    spaced = [" " + w for w in words]
    tok.train_from_iterator([*corpus_lines(extra_corpus), *words, *spaced] * 4, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=unk_token,
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        additional_special_tokens=list(additional_special_tokens) or None,
    )
    return wrapped


__all__ = ["ANSWER_WORDS", "corpus_lines", "train_bpe_tokenizer"]
