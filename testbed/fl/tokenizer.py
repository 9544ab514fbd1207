"""A character-level tokenizer built locally (no hub download) for the embedded task."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any, Protocol

from testbed.errors import UserError

__all__ = ["CHARSET", "CharTokenizer", "TextTokenizer", "load_tokenizer"]

#: Every character the embedded dataset can produce.
CHARSET = string.digits + string.ascii_lowercase + string.ascii_uppercase + " :=#>?-"

_FILE = "char_tokenizer.json"


class TextTokenizer(Protocol):
    """What the learning code needs from a tokenizer."""

    pad_token_id: int
    bos_token_id: int

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        ...


class CharTokenizer:
    """One token per character, plus ``<pad>`` (id 0) and ``<bos>`` (id 1).

    Parameters
    ----------
    charset
        The characters, in id order starting at 2.
    """

    pad_token_id = 0
    bos_token_id = 1

    def __init__(self, charset: str = CHARSET) -> None:
        if len(set(charset)) != len(charset):
            raise ValueError("charset has repeated characters")
        self.charset = charset
        self._ids = {c: i + 2 for i, c in enumerate(charset)}

    @property
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""
        return len(self.charset) + 2

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of ``text``; unknown characters raise ``ValueError``."""
        try:
            return [self._ids[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the tokenizer charset") from exc

    def decode(self, ids: list[int]) -> str:
        """Inverse of :meth:`encode`; special tokens are dropped."""
        return "".join(self.charset[i - 2] for i in ids if i >= 2)

    def save(self, directory: str | Path) -> None:
        """Write ``char_tokenizer.json`` into ``directory``."""
        Path(directory, _FILE).write_text(json.dumps({"charset": self.charset}))

    @classmethod
    def load(cls, directory: str | Path) -> CharTokenizer:
        """Read a tokenizer written by :meth:`save`."""
        return cls(json.loads(Path(directory, _FILE).read_text())["charset"])

    @staticmethod
    def present(directory: str | Path) -> bool:
        """Whether ``directory`` holds a saved :class:`CharTokenizer`."""
        return Path(directory, _FILE).is_file()


class _HFTokenizer:
    """Adapter giving a Hugging Face tokenizer the :class:`TextTokenizer` shape."""

    def __init__(self, tok: Any) -> None:
        self._tok = tok
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.pad_token_id = int(pad if pad is not None else 0)
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        self.bos_token_id = int(bos if bos is not None else self.pad_token_id)

    def encode(self, text: str) -> list[int]:
        return list(self._tok(text, add_special_tokens=False)["input_ids"])


#: Files a Hugging Face tokenizer is saved as (any one is enough to try loading it).
HF_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "spiece.model",
    "vocab.json",
    "vocab.txt",
)


def load_tokenizer(path: str | Path) -> TextTokenizer:
    """Tokenizer stored with a local checkpoint (ours, else a Hugging Face one, offline).

    Raises
    ------
    UserError
        One line naming the directory: no tokenizer saved there (and what to save), or one
        that cannot be loaded.
    """
    if CharTokenizer.present(path):
        return CharTokenizer.load(path)
    p = Path(path)
    if not any((p / f).is_file() for f in HF_TOKENIZER_FILES):
        raise UserError(
            f"{p}: no tokenizer in the model directory; save the model's tokenizer there "
            f"(tokenizer.save_pretrained({str(p)!r}) writes tokenizer.json and "
            "tokenizer_config.json)"
        )
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{p}: cannot load the tokenizer: {first}") from exc
    return _HFTokenizer(tok)
