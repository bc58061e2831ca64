"""Reporting a run: the terminal summary, and the summary and gallery of a sweep."""
