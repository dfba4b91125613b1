"""A model's tokenizer and chat template, loaded without its weights: how the `openai` backend
renders, counts and truncates prompts on the client, byte for byte as the in-process backend
does (same template code), so a server's prefix cache sees identical prefixes."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from ..errors import ModelError

log = logging.getLogger(__name__)


class TokenizerText:
    """`encode`, `count_tokens` and `truncate_tokens` over a Hugging Face ``tokenizer``
    attribute: shared by the in-process backend and the `openai` backend's local tokenizer, so
    both count and cut text the same way."""

    tokenizer: Any

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def truncate_tokens(self, text: str, n_tokens: int) -> str:
        """The text cut to at most `n_tokens` tokens (with an ellipsis when cut)."""
        if n_tokens <= 0:
            return ""
        ids = self.encode(text)
        if len(ids) <= n_tokens:
            return text
        return str(self.tokenizer.decode(ids[:n_tokens])).rstrip() + "..."


class LocalTokenizer(TokenizerText):
    """`chat_prompt`, `encode`, `count_tokens`, `truncate_tokens` and label tokens of the model
    spec `spec` (a preset, local folder, `.gguf` file or hub id)."""

    def __init__(self, spec: str, system_prompt: str | None = None, setting: str = "server.tokenizer") -> None:
        from .models import materialize

        try:
            resolved = materialize(spec)
        except ModelError as e:
            raise ModelError(
                f"the openai backend renders prompts locally with the model's tokenizer and chat template, "
                f"and could not load one for {spec!r}: {e}. Set {setting} to a preset, a local model folder, "
                "a .gguf file or a hub id with the served model's tokenizer"
            ) from None
        if resolved.offline:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from transformers import AutoTokenizer

            self.tokenizer: Any = AutoTokenizer.from_pretrained(resolved.path, local_files_only=resolved.offline)
        except (OSError, ValueError, KeyError) as e:
            detail = " ".join(str(e).split())
            raise ModelError(f"could not load the tokenizer of {spec!r} from {resolved.path}: {detail}; "
                             f"set {setting} to the served model's tokenizer") from None
        self.spec = spec
        self.system_prompt = system_prompt
        self._labels: dict[tuple[str, ...], list[tuple[int, str]]] = {}
        log.debug("tokenizer of %s loaded from %s", spec, resolved.path)

    def chat_prompt(self, user_message: str, system: str | None = None) -> str:
        """The chat template applied to one user turn (as `HFBackend.chat_prompt`)."""
        system = system if system is not None else self.system_prompt
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user_message}
        ]
        if getattr(self.tokenizer, "chat_template", None):
            return str(self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False))
        head = f"{system}\n\n" if system else ""
        return f"{head}{user_message}\n\nAnswer: "

    def label_tokens(self, labels: Sequence[str]) -> list[tuple[int, str]]:
        """(id, text) of each label's first token; labels must map to distinct tokens. The text
        is what a server names that token in its top log-probabilities."""
        key = tuple(labels)
        if key not in self._labels:
            out = []
            for lab in labels:
                ids = self.encode(lab)
                if not ids:
                    raise ModelError(f"label {lab!r} encodes to no tokens")
                out.append((ids[0], str(self.tokenizer.decode([ids[0]]))))
            if len({i for i, _ in out}) != len(out) or len({t for _, t in out}) != len(out):
                raise ModelError(f"labels {list(labels)} do not map to distinct first tokens")
            self._labels[key] = out
        return self._labels[key]


__all__ = ["LocalTokenizer"]
