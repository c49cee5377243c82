"""medseg.evaluation (under construction)."""
