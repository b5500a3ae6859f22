"""studylib: an executable study of compressing multimodal LLMs (prune, then recover)."""

__version__ = "0.1.0"
