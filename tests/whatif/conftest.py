"""The what-if tests use the benchmark cluster generator and the helpers beside them."""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(__file__)
for path in (HERE, os.path.join(HERE, "..", "..", "benchmarks")):
    if path not in sys.path:
        sys.path.insert(0, path)
