"""The simulated model catalog: real open models and the sizes that drive the cost model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Weights and KV cache are held in BF16, as vLLM serves these checkpoints by default.
BF16_BYTES = 2


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model: its id as clients request it and its architecture figures."""

    id: str
    owned_by: str
    parameters: int
    layers: int
    hidden_size: int
    kv_heads: int
    head_dim: int
    max_context: int
    bytes_per_weight: int = BF16_BYTES
    bytes_per_kv_value: int = BF16_BYTES
    # Whether memory.default_models may pick it; the benchmark models are served
    # only when asked for by id.
    default: bool = True
    # An embedding model's vector length; 0 for a generation model. An embedding
    # model runs prefill only (one forward pass, pooled) and keeps no KV cache.
    embedding_dimensions: int = 0
    # Whether its vectors may be cut shorter (trained with Matryoshka representation
    # learning): the first d values, renormalised, are its d-dimensional embedding.
    matryoshka: bool = False

    @property
    def embeds(self) -> bool:
        return self.embedding_dimensions > 0

    @property
    def weight_bytes(self) -> int:
        return self.parameters * self.bytes_per_weight

    @property
    def kv_bytes_per_token(self) -> int:
        """KV cache held per token of context: a K and a V vector per layer and KV head."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.bytes_per_kv_value


# Ids are the Hugging Face repository ids, which is what vLLM serves them as and what
# clients put in "model". The order is the default preference order of the sim
# (see memory.default_models): the small model every GPU can hold comes first.
# Parameter counts are the model cards' (safetensors) totals; the rest is config.json.
MODELS: tuple[ModelSpec, ...] = (
    # huggingface.co/meta-llama/Llama-3.1-8B-Instruct: card "8B" (8.03B params);
    # config.json: num_hidden_layers 32, hidden_size 4096, num_key_value_heads 8,
    # head_dim 128, max_position_embeddings 131072.
    ModelSpec(
        id="meta-llama/Llama-3.1-8B-Instruct",
        owned_by="meta-llama",
        parameters=8_030_000_000,
        layers=32,
        hidden_size=4096,
        kv_heads=8,
        head_dim=128,
        max_context=131_072,
    ),
    # huggingface.co/Qwen/Qwen2.5-14B-Instruct: card "Number of Parameters: 14.7B",
    # "Number of Layers: 48", "40 for Q and 8 for KV"; config.json: hidden_size 5120
    # (head_dim 5120/40 = 128), max_position_embeddings 32768.
    ModelSpec(
        id="Qwen/Qwen2.5-14B-Instruct",
        owned_by="Qwen",
        parameters=14_700_000_000,
        layers=48,
        hidden_size=5120,
        kv_heads=8,
        head_dim=128,
        max_context=32_768,
    ),
    # huggingface.co/mistralai/Mistral-7B-Instruct-v0.3: 7.25B params (safetensors);
    # config.json: num_hidden_layers 32, hidden_size 4096, num_key_value_heads 8,
    # head_dim 128, max_position_embeddings 32768.
    ModelSpec(
        id="mistralai/Mistral-7B-Instruct-v0.3",
        owned_by="mistralai",
        parameters=7_250_000_000,
        layers=32,
        hidden_size=4096,
        kv_heads=8,
        head_dim=128,
        max_context=32_768,
    ),
    # huggingface.co/Qwen/Qwen2.5-32B-Instruct: card "Number of Parameters: 32.5B",
    # "Number of Layers: 64", "40 for Q and 8 for KV"; config.json: hidden_size 5120,
    # max_position_embeddings 32768.
    ModelSpec(
        id="Qwen/Qwen2.5-32B-Instruct",
        owned_by="Qwen",
        parameters=32_500_000_000,
        layers=64,
        hidden_size=5120,
        kv_heads=8,
        head_dim=128,
        max_context=32_768,
    ),
    # huggingface.co/meta-llama/Llama-3.1-70B-Instruct: card "70B" (70.6B params);
    # config.json: num_hidden_layers 80, hidden_size 8192, num_key_value_heads 8,
    # head_dim 128, max_position_embeddings 131072. 141 GB in BF16: only a
    # multi-GPU sim worker holds it.
    ModelSpec(
        id="meta-llama/Llama-3.1-70B-Instruct",
        owned_by="meta-llama",
        parameters=70_600_000_000,
        layers=80,
        hidden_size=8192,
        kv_heads=8,
        head_dim=128,
        max_context=131_072,
    ),
    # The models published serving benchmarks use (CALIBRATION.md), after the ones the
    # sim serves by default so the default choice per GPU stays the same.
    # huggingface.co/meta-llama/Meta-Llama-3-8B-Instruct: 8.03B params; config.json:
    # num_hidden_layers 32, hidden_size 4096, num_key_value_heads 8,
    # max_position_embeddings 8192.
    ModelSpec(
        id="meta-llama/Meta-Llama-3-8B-Instruct",
        owned_by="meta-llama",
        parameters=8_030_000_000,
        layers=32,
        hidden_size=4096,
        kv_heads=8,
        head_dim=128,
        max_context=8192,
        default=False,
    ),
    # huggingface.co/meta-llama/Llama-2-7b-chat-hf: 6.74B params; config.json:
    # num_hidden_layers 32, hidden_size 4096, num_key_value_heads 32 (multi-head
    # attention: four times the KV cache per token of the GQA models above),
    # max_position_embeddings 4096.
    ModelSpec(
        id="meta-llama/Llama-2-7b-chat-hf",
        owned_by="meta-llama",
        parameters=6_740_000_000,
        layers=32,
        hidden_size=4096,
        kv_heads=32,
        head_dim=128,
        max_context=4096,
        default=False,
    ),
    # huggingface.co/Qwen/Qwen2.5-7B-Instruct: card "Number of Parameters: 7.61B",
    # "Number of Layers: 28", "28 for Q and 4 for KV"; config.json: hidden_size 3584
    # (head_dim 3584/28 = 128), max_position_embeddings 32768.
    ModelSpec(
        id="Qwen/Qwen2.5-7B-Instruct",
        owned_by="Qwen",
        parameters=7_610_000_000,
        layers=28,
        hidden_size=3584,
        kv_heads=4,
        head_dim=128,
        max_context=32_768,
        default=False,
    ),
)


# Embedding models (sentence-transformers BERT encoders): bidirectional attention over
# at most max_context tokens, every head its own K and V (kv_heads = attention heads),
# figures from each repository's config.json and model card. The first one
# memory.default_models adds next to the generation models wherever it fits.
EMBEDDING_MODELS: tuple[ModelSpec, ...] = (
    # huggingface.co/BAAI/bge-small-en-v1.5: 33.4M params (safetensors); config.json:
    # num_hidden_layers 12, hidden_size 384 (the vector: CLS pooling),
    # num_attention_heads 12 (head_dim 32), max_position_embeddings 512.
    ModelSpec(
        id="BAAI/bge-small-en-v1.5",
        owned_by="BAAI",
        parameters=33_400_000,
        layers=12,
        hidden_size=384,
        kv_heads=12,
        head_dim=32,
        max_context=512,
        embedding_dimensions=384,
    ),
    # huggingface.co/BAAI/bge-large-en-v1.5: 335M params (safetensors); config.json:
    # num_hidden_layers 24, hidden_size 1024 (the vector: CLS pooling),
    # num_attention_heads 16 (head_dim 64), max_position_embeddings 512.
    ModelSpec(
        id="BAAI/bge-large-en-v1.5",
        owned_by="BAAI",
        parameters=335_000_000,
        layers=24,
        hidden_size=1024,
        kv_heads=16,
        head_dim=64,
        max_context=512,
        default=False,
        embedding_dimensions=1024,
    ),
    # huggingface.co/nomic-ai/nomic-embed-text-v1.5: card table "SeqLen 8192" at
    # "Dimension" 768, 512, 256, 128 and 64 (Matryoshka; Nomic's announcement:
    # "Variable embedding dimension from 64 <-> 768"), 137M params (safetensors);
    # config.json: n_layer 12, n_embd 768, n_head 12 (head_dim 64), n_positions 8192.
    ModelSpec(
        id="nomic-ai/nomic-embed-text-v1.5",
        owned_by="nomic-ai",
        parameters=137_000_000,
        layers=12,
        hidden_size=768,
        kv_heads=12,
        head_dim=64,
        max_context=8192,
        default=False,
        embedding_dimensions=768,
        matryoshka=True,
    ),
)
# Every model a simulated worker can serve. MODELS alone are the generation models,
# which the planner and the calibration tables cover.
CATALOG: tuple[ModelSpec, ...] = MODELS + EMBEDDING_MODELS


def find_model(name: str, models: Sequence[ModelSpec] = MODELS) -> ModelSpec:
    """A model of `models` (default: the generation models; CATALOG for all) by its id,
    or by the part after the "/" (case-insensitive)."""
    wanted = name.strip().lower()
    for model in models:
        if wanted in (model.id.lower(), model.id.rsplit("/", 1)[-1].lower()):
            return model
    known = ", ".join(model.id for model in models)
    raise ValueError(f"unknown model {name!r}; known models: {known}")
