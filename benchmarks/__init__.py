"""Measured performance (latency in cycles, Fmax, throughput); run with make bench."""
