"""Declarative rule files and the adapter that runs them on durable-rules."""
