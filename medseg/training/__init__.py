"""medseg.training (under construction)."""
