"""Unit tests of services/storage/."""
