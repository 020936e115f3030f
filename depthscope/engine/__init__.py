"""Engine: walk the captured graph, track longest paths, fit sweeps, and build the Analysis."""

# auto: symbolic, falling back to fitted; symbolic: one symbolic export; fitted: exact counts at a sweep, fitted.
ENGINES = ("auto", "symbolic", "fitted")
