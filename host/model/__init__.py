"""Reference models of every gateware block in plain Python (no Amaranth): the specification."""
