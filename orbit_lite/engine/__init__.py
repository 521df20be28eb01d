"""The only loops: meta-training and validation, personalization, recognition, evaluation and its report, and the
helpers that spread them over processes (distributed.py)."""
