"""Engine: walk the captured graph, track longest paths, fit sweeps, and build the Analysis."""
