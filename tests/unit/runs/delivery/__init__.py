"""Unit tests of services/runs/delivery/."""
