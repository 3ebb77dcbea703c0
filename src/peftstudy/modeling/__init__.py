"""Base models: families, the model registry, loading, task heads and batching (everything that knows an
architecture)."""
