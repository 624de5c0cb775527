"""Tests of the operator console's views and charts."""
