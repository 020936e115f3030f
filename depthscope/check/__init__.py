"""`depthscope check`: complexity budgets, the lock file, the analysis cache, and the command."""
