"""Pure formulas: parameters, bytes, FLOPs and seconds. No I/O, no solver."""
