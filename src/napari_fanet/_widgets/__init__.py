"""napari dock widgets: thin layers over the core (layout and wiring only)."""
