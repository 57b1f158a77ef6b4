"""smtp-conformance: a Hypothesis-based conformance test suite for SMTP servers.

The engine (tables, parser, client, model, checks) works without pytest; the pytest plugin
is a thin layer over it.
"""

__version__ = "0.1.0"
