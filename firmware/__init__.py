"""Per-board top-levels, bitstream builds with manifests, exported register map."""
