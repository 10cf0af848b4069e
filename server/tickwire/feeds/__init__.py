"""Market-data sources: files in the project's ``data/`` folder, replayed or loaded."""
