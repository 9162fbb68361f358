"""Config schemas and the checks that run before any data is read or torch is imported."""
