"""Unit tests of services/runs/domain/."""
