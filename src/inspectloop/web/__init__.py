"""The web layer: the inspection service's HTTP API and the review pages. Thin: parse, call, present.

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart, Jinja2).
"""
