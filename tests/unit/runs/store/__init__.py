"""Unit tests of services/runs/store/."""
