"""Data package (files read with importlib.resources); no Python code."""
