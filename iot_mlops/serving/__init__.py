"""The prediction service: FastAPI app, API keys, hot-swapped models, explanations."""
