"""medseg.inference (under construction)."""
