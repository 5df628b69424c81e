"""Metrics: feature extractors behind a registry, and pure metric functions on features."""
