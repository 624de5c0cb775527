"""Browser tests: the console and the docs in headless Chromium."""
