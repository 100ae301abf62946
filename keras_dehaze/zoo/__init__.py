"""Model zoo: readers and converters for official third-party checkpoints (no PyTorch needed)."""
