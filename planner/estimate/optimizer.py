"""Bytes of optimizer state per parameter, as each optimizer really allocates it."""

from __future__ import annotations

from planner.estimate.parameters import TensorCount
from planner.schemas.workload import Optimizer

FP32 = 4
# bitsandbytes >= 0.44 quantises 8-bit optimizer states block-wise in blocks of 256 with one fp32
# absmax per block (bitsandbytes PR #1365; before 0.44 the block was 2048). Tensors under 4,096
# elements keep fp32 states (min_8bit_size).
BNB_BLOCK = 256
BNB_MIN_8BIT_SIZE = 4096


def estimate_optimizer_state_bytes(tensor: TensorCount, optimizer: Optimizer) -> float:
    """Optimizer-state bytes for one tensor (master weights not included)."""
    n = tensor.params
    if optimizer in ("adamw", "adam"):
        return 2 * FP32 * n  # exp_avg and exp_avg_sq in fp32 (torch.optim.AdamW)
    if optimizer == "adamw_8bit":
        if n < BNB_MIN_8BIT_SIZE:
            return 2 * FP32 * n
        return 2 * (n + FP32 * -(-n // BNB_BLOCK))  # two uint8 states + fp32 absmax per block each
    if optimizer == "adafactor":
        # transformers Adafactor, beta1=None: factored second moment (a row and a column vector in
        # fp32) for matrices, a full fp32 second moment for 1-D tensors; no first moment.
        if tensor.is_matrix and tensor.row_size and n // tensor.row_size > 1:
            rows = n // tensor.row_size
            return FP32 * (rows + tensor.row_size)
        return FP32 * n
    if optimizer in ("lion", "sgd_momentum"):
        return FP32 * n  # one momentum buffer
    if optimizer == "sgd":
        return 0.0
    raise ValueError(f"unknown optimizer {optimizer}")
