"""Pure math over feature maps (numpy arrays): channel reductions, geometry, comparisons. No I/O, no torch."""
