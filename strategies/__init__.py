"""Hypothesis strategies for SMTP commands, valid and malformed, built on conformance.grammar."""
