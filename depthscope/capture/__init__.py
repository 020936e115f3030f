"""Capture: torch.export the model, swap in stand-ins for what export rejects, name symbols after the user's Dims."""
