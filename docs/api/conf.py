"""Sphinx configuration of lrfast's API reference, built from the installed package's
docstrings (``sphinx-build -W -b html docs/api build/api``; CI builds it with warnings as
errors)."""

import lrfast

project = "lrfast"
release = version = lrfast.__version__
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
