"""lmms-eval: task export, the model plugin, importing its scores and cross-checking them against studylib."""
