"""What every layer may import: the settings object and the project's error classes."""
