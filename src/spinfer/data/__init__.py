"""Parameter grids, texture datasets, splits and noise."""
