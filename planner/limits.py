"""The documented limits on what the planner reads (docs/limits.md). Each is checked before the
input is read or expanded, and an error names the limit it hit. They are far above any real
model, inventory or checkpoint, and keep a hostile file from taking unbounded time or memory."""

from __future__ import annotations

from planner.units import MiB

# Files, by kind, in bytes.
MAX_INVENTORY_FILE_BYTES = 4 * MiB
MAX_CONFIG_FILE_BYTES = 16 * MiB  # config.json
MAX_INDEX_FILE_BYTES = 64 * MiB  # model.safetensors.index.json (DeepSeek-V3's is about 9 MB)
MAX_DETECT_FILE_BYTES = 16 * MiB  # saved nvidia-smi or system_profiler output
MAX_PLAN_FILE_BYTES = 64 * MiB
MAX_PRICE_FILE_BYTES = 4 * MiB
MAX_SAFETENSORS_HEADER_BYTES = 100 * 1000 * 1000  # the safetensors library's own limit
MAX_PATH_BYTES = 4096  # PATH_MAX on Linux

# Checkpoint headers.
MAX_CHECKPOINT_TENSORS = 500_000  # DeepSeek-V3 in FP8 with its scales has about 92,000
MAX_CHECKPOINT_SHARDS = 10_000
MAX_GGUF_METADATA_KEYS = 10_000  # real files have 30-60
MAX_GGUF_ARRAY_ITEMS = 8 * 2**20  # over all arrays: tokens, scores, types and merges of a 262k vocabulary
MAX_GGUF_STRING_BYTES = 16 * MiB  # one string (chat templates are tens of KB)
MAX_GGUF_TENSOR_DIMS = 8

# Model shapes.
MAX_LAYERS = 1024  # the largest published models have about 130
MAX_HIDDEN_SIZE = 2**20
MAX_HEADS = 2**14
MAX_VOCAB_SIZE = 2**25
MAX_EXPERTS = 2**14
MAX_CONTEXT_TOKENS = 2**31 - 1

# Inventories.
MAX_NODES = 4096
MAX_DEVICES = 65_536
MAX_DEVICE_TYPES = 64  # distinct device models (catalog ids or custom devices) in one inventory
MAX_NETWORK_LINKS = 65_536
MAX_NESTING_DEPTH = 50  # mappings and lists inside each other, in YAML and JSON files
MAX_YAML_VALUES = 200_000  # values after aliases are expanded

# Command-line values.
MAX_USERS = 1_000_000
MAX_BATCH = 2**24
MAX_TIME_LIMIT_S = 86_400.0
MAX_PARAMETER_COUNT = 10**15
MAX_MEMORY_GB = 10**6  # one device or machine (a petabyte)
MAX_PRICE_USD = 10**12
