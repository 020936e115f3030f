from depthscope.cli import entry_point

entry_point()
