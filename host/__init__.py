"""Host software: reference models, device transports, controller, strategies, risk/PnL, hostctl."""
