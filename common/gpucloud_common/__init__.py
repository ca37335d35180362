"""What the core, the gateway and the worker share: logging, settings, signals, channels."""
