"""Monitoring: drift, data quality, feedback and live model performance."""
