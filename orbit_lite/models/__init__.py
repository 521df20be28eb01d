"""Models: backbones (feature extractors), FiLM, set encoder and classifier heads."""
