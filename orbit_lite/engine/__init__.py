"""The only loops: meta-training, validation (and, later, personalization and evaluation)."""
