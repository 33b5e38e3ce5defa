"""Power modes (nvpmodel, jetson_clocks), telemetry samplers and profiling reports."""
