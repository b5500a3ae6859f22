"""Compression: pruning (scoring and planning), recovery by finetuning and distillation, recipes, losses, int8 quantization."""
