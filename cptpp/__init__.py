"""cptpp: graph learning with parameter-efficient tuning."""

__version__ = "0.1.0"
