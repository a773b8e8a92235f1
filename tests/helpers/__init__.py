"""Code that only conftest.py imports; tests reach it through the fixtures conftest.py defines."""
