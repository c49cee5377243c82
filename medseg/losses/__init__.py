"""medseg.losses (under construction)."""
