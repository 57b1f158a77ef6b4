"""The design card's top-level ``strategies/``: in a checkout, ``import strategies`` gives the
public Hypothesis strategies. They live in, and are installed as, ``conformance.strategies``,
so that an installed smtp-conformance never shadows a user's own module named ``strategies``
(this folder is not installed; see pyproject.toml)."""

from conformance.strategies import *  # noqa: F403
from conformance.strategies import __all__ as __all__
