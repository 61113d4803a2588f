"""Make a tiny random-weight Llama model with a locally trained BPE tokenizer.

No model hub is reachable from the lab, so the lab serves a model made here: a byte-level BPE
tokenizer trained on local text files and a `LlamaForCausalLM` with random weights (seeded, so
the same inputs give the same files). vLLM's CPU attention needs head_dim 64 or more: hidden
256 with 4 heads gives 64.

Usage: make_tiny_model.py OUTPUT_DIR [--corpus PATH ...] [--vocab-size N] [--seed N]
Needs torch, transformers and tokenizers (the engine's virtualenv has them).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


def corpus_files(paths: list[str]) -> list[str]:
    """Every readable text file under the given paths (files or directories), sorted."""
    found: list[str] = []
    for raw in paths:
        path = Path(raw)
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for candidate in candidates:
            if candidate.suffix in {".md", ".txt", ".py", ".yml", ".yaml", ""}:
                try:
                    candidate.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    continue
                found.append(str(candidate))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--corpus", action="append", default=[], help="file or directory of local text (repeatable)")
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--name", default="tiny-llama")
    args = parser.parse_args(argv)

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    files = corpus_files(args.corpus or [str(Path(__file__).resolve().parent)])
    if not files:
        print(f"no text files found in {args.corpus}", file=sys.stderr)
        return 1

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train(files, trainer)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    fast.chat_template = CHAT_TEMPLATE

    torch.manual_seed(args.seed)
    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=64,
        max_position_embeddings=2048,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)
    (out / "inferops-model.json").write_text(
        json.dumps({"name": args.name, "seed": args.seed, "corpus_files": len(files), "vocab": config.vocab_size})
        + "\n",
        encoding="utf-8",
    )
    print(
        f"tiny model written to {out}: vocab {config.vocab_size}, {sum(p.numel() for p in model.parameters())} params"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
