"""Board-independent gateware: one wiring.Component per block; wire formats as data.Struct."""
