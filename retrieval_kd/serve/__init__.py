"""``rkd serve``: indexes behind an HTTP API and a search page (FastAPI + uvicorn).

:func:`~retrieval_kd.serve.systems.open_served` opens each index with the query encoder its
manifest records; :func:`~retrieval_kd.serve.app.create_app` puts them behind ``POST /search``
(micro-batched through the encoder), ``/health``, ``/metrics`` and the page at ``/``. Importing
this package imports neither FastAPI nor torch.
"""

from __future__ import annotations
