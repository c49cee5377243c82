"""medseg.models (under construction)."""
