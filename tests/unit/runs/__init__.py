"""Unit tests of services/runs/."""
