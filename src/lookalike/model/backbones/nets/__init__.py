"""Network architectures lookalike defines itself (torchvision-compatible where noted)."""
