"""Recording what a torch model computes (hooks, method and function wrappers) and naming the recorded maps."""
