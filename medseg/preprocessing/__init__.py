"""medseg.preprocessing (under construction)."""
