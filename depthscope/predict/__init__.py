"""Predict and validate: device profiles, Brent's bound and rooflines, timed runs, plots."""
