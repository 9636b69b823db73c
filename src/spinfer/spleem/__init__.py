"""Experimental (SPLEEM-like) images: ingest, physical units, domain-wall fits."""
