"""The conformance suite itself, collected by pytest (``pytest --pyargs conformance.suite``)."""
