"""Analysis of results rows: the one confidence-interval rule, the paper's numbers, findings and verdicts, advice."""
