"""Plotting functions (matplotlib + seaborn) that read the tidy tables a study writes."""
