"""Placeholder: methods of this module are being added (issue #4)."""

METHODS: list = []
