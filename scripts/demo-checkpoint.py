"""Writes the embedded demo checkpoint: the MiniLM weights of data/ as a small sharded model
directory (two shards, model.safetensors.index.json, config.json), the input of setup.sh's main
job. Usage: python scripts/demo-checkpoint.py OUT_DIR"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from breccia.bridges import load_safetensors, save_safetensors

SOURCE = Path(__file__).resolve().parent.parent / "data" / "minilm-l6-layer0-qkv.safetensors"
# sentence-transformers/all-MiniLM-L6-v2's configuration (a 6-layer BERT, hidden size 384).
CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": 384,
    "intermediate_size": 1536,
    "num_attention_heads": 12,
    "num_hidden_layers": 6,
    "max_position_embeddings": 512,
    "vocab_size": 30522,
    "torch_dtype": "float32",
}


def main(out: Path) -> None:
    tensors = load_safetensors(SOURCE)
    names = sorted(tensors)
    shards = [names[:2], names[2:]]
    out.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for number, shard in enumerate(shards, start=1):
        file = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        save_safetensors({name: tensors[name] for name in shard}, out / file)
        weight_map.update(dict.fromkeys(shard, file))
    index = {
        "metadata": {"total_size": sum(t.nbytes for t in tensors.values())},
        "weight_map": weight_map,
    }
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
