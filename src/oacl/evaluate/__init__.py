"""oacl.evaluate: localisation (localization.py), linear evaluation (linear.py) and
background/distribution-shift evaluation (shift.py) on cached frozen features
(features.py). `oacl evaluate ...` is defined in cli.py."""
