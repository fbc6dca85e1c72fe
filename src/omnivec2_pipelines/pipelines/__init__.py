"""Thin Kedro nodes and declarative pipelines (one template per stage)."""
