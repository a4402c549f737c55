"""MkDocs hook (mkdocs.yml): the API reference page reads the repository's own openapi.yaml.

The contract stays in one place, at the top of the repository where the service serves it
from; the site gets it as a file beside its pages, which the Swagger UI tag of
docs/reference.md loads.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File
from mkdocs.structure.files import Files

CONTRACT = Path(__file__).resolve().parent.parent / "openapi.yaml"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, "openapi.yaml", abs_src_path=str(CONTRACT)))
    return files
