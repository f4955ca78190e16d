"""oacl.evaluate: localisation (localization.py: the driver; loc_metrics.py,
references.py, protocols.py: its scores; loc_markdown.py: its table), linear evaluation
(linear.py) and background/distribution-shift evaluation (shift.py) on cached frozen
features (features.py). Parameters: params.py. `oacl evaluate ...` is defined in cli.py."""
