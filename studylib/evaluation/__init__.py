"""Evaluation: answer metrics, the benchmark loop, chance baselines, and resource measurements (params, FLOPs, memory, latency)."""
