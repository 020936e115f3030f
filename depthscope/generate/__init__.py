"""Generation: prefill, a decode step with a KV cache of c past tokens, and the closed forms over T new tokens."""
