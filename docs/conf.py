"""Sphinx configuration of the documentation site: the getting-started page and the API reference,
read from the code's numpydoc docstrings. Built with warnings as errors (a test runs it):
``sphinx-build -W --keep-going -b html docs docs/_build``. numpydoc's validation turns a public name
without a docstring, a parameter left undocumented or unknown, and a returned value without a
Returns section into warnings, so into errors."""
project = "metarisk_fast"
author = "the metarisk_fast developers"
extensions = ["sphinx.ext.autodoc", "numpydoc"]
exclude_patterns = ["_build", "ARCHITECTURE.md"]
html_theme = "alabaster"

autodoc_member_order = "bysource"  # methods in the order the code gives them
autodoc_typehints = "none"  # the signature line stays short: the types are in the Parameters sections
numpydoc_show_class_members = False  # autodoc's :members: lists the methods, once
numpydoc_validation_checks = {"GL08", "PR01", "PR02", "RT01"}  # see above: each an error under -W
