"""Unit tests of weftcore/."""
