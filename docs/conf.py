"""Sphinx configuration: Markdown pages (MyST), the API reference from docstrings (autodoc), the furo theme."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for autodoc

project = "segmodels"
author = "segmodels developers"
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "segmodels"
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_inherit_docstrings = False  # Lightning's own docstrings use its Sphinx extensions


def setup(app):
    """reference.md from conf/ before the pages are read (docs/reference.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from reference import write

    app.connect("builder-inited", lambda app: write(Path(__file__).resolve().parent / "reference.md"))
