"""Production deployment helpers: `iot-mlops doctor` and the probes it uses."""
