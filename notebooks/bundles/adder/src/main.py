"""Captured by sieve-jupyter from a Jupyter kernel's cells: the cells its exported functions and
models need, in notebook order (the comments name each cell)."""

# --- In [1] ---
import json, subprocess, sys, time, urllib.request
from pathlib import Path

import sieve_jupyter as sieve

# --- In [2], lines 1-9 ---
@sieve.Model(name="adder", metadata=sieve.Metadata(title="Adder", description="Adds two numbers, warm."))
class Adder:
    def __setup__(self):
        print("loading the offset once")
        self.offset = 0

    def __predict__(self, x1: int, x2: int) -> int:
        """Add x1 and x2."""
        return x1 + x2 + self.offset
