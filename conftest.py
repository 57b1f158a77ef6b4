"""Checkout-level pytest configuration: the project's own tests drive the plugin with pytester."""

pytest_plugins = ["pytester"]
