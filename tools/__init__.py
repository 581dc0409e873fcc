"""Developer scripts run by hand: synthesis/Fmax reports, pcap utilities, plots."""
