"""Thin command-line layer: parse options, build a config, call one engine function."""
