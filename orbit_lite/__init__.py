"""orbit-lite: teachable object recognizers from a few videos (ORBIT benchmark, LITE meta-training)."""

__version__ = "0.1.0"
