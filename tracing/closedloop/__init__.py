"""The epidemic closed loop: ``params`` (interventions), ``contacts`` (the contact process),
``channels`` (who is warned: app, QR, manual, oracle), ``loop`` (the day loop), ``calibration``."""
