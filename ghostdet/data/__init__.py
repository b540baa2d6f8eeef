"""Datasets, scanning/validation, transforms and loaders."""
