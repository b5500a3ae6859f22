"""The study: run parameters (the only home of defaults), the grid of prune -> recover -> evaluate cells, the runner and the book."""
