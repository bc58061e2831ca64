"""Numbers over a run: channel statistics, a channel atlas, explanation metrics."""
