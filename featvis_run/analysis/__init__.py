"""Numbers over a run: annotations, explanation metrics, channel statistics and the atlas."""
