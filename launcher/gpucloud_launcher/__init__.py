"""The `gpucloud` command: assembles the core, the gateway and workers into processes."""
