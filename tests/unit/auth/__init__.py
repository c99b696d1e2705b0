"""Unit tests of services/auth/."""
