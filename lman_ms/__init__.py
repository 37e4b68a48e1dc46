"""lman_ms: a MindSpore port of L-Man and HumanIns."""
__version__ = "0.1.0"
