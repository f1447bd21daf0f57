"""The screening engine: no torch, no Qt."""
